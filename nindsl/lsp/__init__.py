"""`nindsl lsp`: the language server, and highlighting for editors and Pygments.

``analysis.py`` checks a document with the same checker as `nindsl check` (unsaved imported
documents read from the editor) and finds what is at a position; ``features.py`` turns that
into hover text, definitions, inlay hints, completions and formatting; ``server.py`` is the
pygls server (debounced diagnostics, dependants re-checked, no handler error kills it);
``pygments_lexer.py`` is the Pygments lexer for ``*.nin``. Like the language package, nothing
here imports numpy, ONNX, PyTorch or TVM, so the server starts fast; only ``server.py``
needs pygls (the ``lsp`` extra).
"""
