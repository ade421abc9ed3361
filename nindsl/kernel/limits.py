"""Bounds on the work a spec may ask for, checked before anything is expanded.

A spec is untrusted input: these keep ``nindsl check`` finite in time and memory
whatever the text says (RELIABILITY.md, rule 5).
"""

MAX_FILE_BYTES = 1 << 20  # 1 MiB of spec text
MAX_NUMBER_DIGITS = 24  # longer literals are refused before conversion
MAX_INT = 1 << 40  # any integer value (sizes, counts)
MAX_DIM = 1 << 20  # one tensor dimension
MAX_REPEAT = 10_000  # one `repeat n`
MAX_NESTING = 32  # blocks and repeats inside each other
MAX_IMPORT_DEPTH = 16  # chain of imports
MAX_LAYERS = 100_000  # layers of one network after expansion
# Weights of one network: every backend starts from one ONNX file that holds them, and protobuf
# (so ONNX) stops at 2 GiB: 500 M float32 values leave room for the graph.
MAX_PARAMETERS = 500_000_000
MAX_ACTIVATION = 1 << 31  # values of one layer's output for one example (8 GiB of float32)
MAX_LIST = 4_096  # items of one list literal (e.g. mlpconv widths)
MAX_EXPRESSION_DEPTH = 200  # operators and parentheses inside each other in one expression
# One name (network, label, parameter, `let`, block): names become file names (`NAME.onnx`, at most 255
# bytes), ONNX and Python names, and parts of messages.
MAX_NAME = 200
# A train section's `resize`: image files are read at resize×resize before they are cropped (8,192²
# is 67 M pixels, 0.8 GB of float32 RGB for one image; Pillow itself refuses twice 89 M as a bomb).
MAX_RESIZE = 8_192

# `nindsl draw`: matplotlib's time and memory grow with the boxes drawn (a layer, or one convolution
# of an mlpconv: 300 take about 7 s and 0.45 GB) and with a PNG's pixels (about 10 bytes each).
MAX_DRAW_BOXES = 300  # at 200 dpi, 300 layers make a PNG of 54 M pixels: within MAX_DRAW_PIXELS
MAX_DPI = 1_200
MAX_DRAW_PIXELS = 64_000_000

# Numbers on the command line: a seed every library takes (PyTorch's and NumPy's generators stop
# at 64 bits), and threads per process (more than a few per usable CPU only fight each other;
# tens of thousands end the process when thread creation fails).
MAX_SEED = (1 << 63) - 1
MAX_THREADS_PER_CPU = 4

# Files nindsl reads, checked (kind and size) before a byte is read.
MAX_MODEL_BYTES = 3 << 30  # an ONNX model (ONNX itself stops at 2 GiB) or a checkpoint
MAX_INPUT_BYTES = 4 << 30  # an input array
MAX_MANIFEST_BYTES = 1 << 20  # an artifact's manifest.json
MAX_RECORDS_BYTES = 16 << 20  # bench records (--json) an output would replace: read to check they are nindsl's

# The language server: one message from the editor. A spec is at most MAX_FILE_BYTES, and its
# text escaped as JSON at most six times that; more is refused before it is read.
MAX_LSP_MESSAGE_BYTES = 32 << 20
MAX_LSP_HEADER_BYTES = 4 << 10  # one header line (`Content-Length: 1234`)
