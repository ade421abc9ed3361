"""`nindsl lsp`: the language server, and highlighting for editors and Pygments.

``analysis.py`` checks a document with the same checker as `nindsl check` (imports read open
documents' unsaved text) and finds what is at a position; ``diagnostics.py`` maps the
checker's diagnostics to LSP's; ``features.py`` answers hover, go to definition, inlay hints
and formatting, ``completion.py`` completion; ``positions.py`` converts columns to the
client's units; ``server.py`` is the pygls server (debounced checks, importers re-checked, no
handler error kills it); ``pygments_lexer.py`` is the Pygments lexer for ``*.nin``. Like the
language package, nothing here imports numpy, ONNX, PyTorch or TVM, so the server starts
fast; all but the lexer need pygls (the ``lsp`` extra).
"""
