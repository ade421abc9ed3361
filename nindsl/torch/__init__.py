"""PyTorch: the twin (``twin.py``, generated source of an ``nn.Module``), training it as
the paper did (``training.py``) and the data it trains on (``data.py``)."""
