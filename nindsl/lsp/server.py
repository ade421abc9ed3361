"""The language server: pygls over stdio, every answer from :mod:`nindsl.lsp.features`.

Diagnostics are published when a document opens and, debounced, after it changes; every
open document that imports a changed one is checked again (imports read open documents'
unsaved text). A failure inside a handler is logged to the client and answered with
nothing: it never stops the server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcServerNotInitialized
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path

from ..kernel import limits
from ..kernel.diagnostics import NindslError
from ..kernel.version import __version__
from . import completion, diagnostics, features
from .positions import Positions
from .analysis import Analysis, analyse

DEBOUNCE_SECONDS = 0.3


_ANSWERED = object()  # a request answered with an error while it was read: nothing more to do


class NinProtocol(LanguageServerProtocol):
    """pygls's protocol, answering every request as LSP asks: one before `initialize` with
    ServerNotInitialized (-32002), one whose params do not fit its method's types with
    InvalidParams (-32602). pygls answered the first with null (after logging an internal error)
    and dropped the second unanswered, leaving the editor waiting for ever."""

    def structure_message(self, data: Any) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException:
            if not _is_request(data):
                raise  # a notification gets no answer (pygls logs it)
            error = JsonRpcInvalidParams(f"{data['method']}: its params are not of the types LSP gives them")
            self._send_response(data["id"], None, error.to_response_error())
            return _ANSWERED

    def handle_message(self, message: Any) -> None:
        if message is not _ANSWERED:
            super().handle_message(message)

    def _handle_request(self, msg_id: Any, method_name: str, params: Any) -> None:
        if self._workspace is None and method_name != types.INITIALIZE:
            self._send_response(msg_id, None, JsonRpcServerNotInitialized().to_response_error())
            return
        super()._handle_request(msg_id, method_name, params)


def _is_request(data: Any) -> bool:
    """A JSON-RPC request (it has an id to answer), as read before its params are typed."""
    return isinstance(data, dict) and isinstance(data.get("method"), str) and \
        isinstance(data.get("id"), (int, str)) and not isinstance(data.get("id"), bool)


class NinServer(LanguageServer):
    """The server's state: the last analysis of each open document and pending checks."""

    def __init__(self, debounce: float = DEBOUNCE_SECONDS):
        super().__init__("nindsl", __version__, protocol_cls=NinProtocol)
        self.debounce = debounce
        self.analyses: dict[str, tuple[int | None, Analysis]] = {}  # uri → (version, its last analysis)
        self.pending: dict[str, asyncio.Task] = {}

    # documents ---------------------------------------------------------------------------

    def path_of(self, uri: str) -> Path:
        path = to_fs_path(uri)
        return Path(path).absolute() if path else Path.cwd() / Path(uri.rsplit("/", 1)[-1] or "untitled.nin").name

    def open_texts(self) -> dict[str, str]:
        """Resolved path → unsaved text of every open document."""
        texts = {}
        for uri, document in list(self.workspace.text_documents.items()):
            try:
                texts[str(self.path_of(uri).resolve())] = document.source
            except (OSError, RuntimeError):
                continue
        return texts

    def analysis(self, uri: str) -> Analysis | None:
        """The analysis of the document's current text and of the open documents it imports
        (the last one, unless something changed since)."""
        document = self.workspace.text_documents.get(uri)
        if document is None:
            return None
        path, texts = self.path_of(uri), self.open_texts()
        texts.pop(str(path.resolve()), None)
        cached = self.analyses.get(uri)
        if cached is not None and cached[1].text == document.source and cached[1].open_texts == texts:
            return cached[1]
        result = analyse(path, document.source, texts)
        self.analyses[uri] = (document.version, result)
        return result

    @property
    def positions(self) -> Positions:
        return Positions(self.workspace.position_encoding or types.PositionEncodingKind.Utf16)

    # checking ----------------------------------------------------------------------------

    def schedule(self, uri: str, delay: float, dependants: bool = True) -> None:
        """Check ``uri`` after ``delay`` seconds, replacing a check already waiting."""
        waiting = self.pending.pop(uri, None)
        if waiting is not None:
            waiting.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._check_later(uri, delay, dependants))

    async def _check_later(self, uri: str, delay: float, dependants: bool) -> None:
        try:
            await asyncio.sleep(delay)
            self.publish(uri)
            if dependants:
                changed = str(self.path_of(uri).resolve())
                for other, (_, analysis) in list(self.analyses.items()):
                    if other != uri and changed in analysis.depends_on and other in self.workspace.text_documents:
                        self.schedule(other, 0, dependants=False)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bug in a check must not stop the server
            self.log_error(f"checking {uri}")
        finally:
            if self.pending.get(uri) is asyncio.current_task():
                del self.pending[uri]

    def publish(self, uri: str) -> None:
        analysis = self.analysis(uri)
        if analysis is None:
            return
        version = self.analyses[uri][0]
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, version=version, diagnostics=diagnostics.to_lsp(analysis, self.positions)))

    def log_error(self, what: str) -> None:
        message = f"nindsl lsp: internal error while {what} (please report it):\n{traceback.format_exc()}"
        logging.getLogger(__name__).error(message)
        try:
            self.window_log_message(types.LogMessageParams(type=types.MessageType.Error, message=message))
        except Exception:  # noqa: BLE001 - the connection itself may be gone
            pass


def _safe(server: NinServer, what: str, fallback: Any = None) -> Callable:
    """Wrap a handler: an exception is logged to the client, and the answer is ``fallback``."""
    def wrap(handler: Callable) -> Callable:
        if asyncio.iscoroutinefunction(handler):
            @functools.wraps(handler)
            async def run_async(params):
                try:
                    return await handler(params)
                except Exception:  # noqa: BLE001 - errors inside the server never kill it
                    server.log_error(what)
                    return fallback
            return run_async

        @functools.wraps(handler)
        def run(params):
            try:
                return handler(params)
            except Exception:  # noqa: BLE001 - errors inside the server never kill it
                server.log_error(what)
                return fallback
        return run
    return wrap


def build_server(debounce: float = DEBOUNCE_SECONDS) -> NinServer:
    """A server with every feature registered (not started)."""
    server = NinServer(debounce)
    _register_document_events(server)
    _register_queries(server)
    return server


def _feature(server: NinServer, method: str, options: Any = None, fallback: Any = None) -> Callable:
    """Register a handler for ``method``, wrapped by :func:`_safe`."""
    def register(handler):
        safe = _safe(server, method, fallback)(handler)
        return server.feature(method, options)(safe)
    return register


def _register_document_events(server: NinServer) -> None:
    """Opening, changing and saving a document checks it; closing one clears its diagnostics."""

    @_feature(server, types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(params: types.DidOpenTextDocumentParams):
        server.schedule(params.text_document.uri, 0)

    @_feature(server, types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(params: types.DidChangeTextDocumentParams):
        server.schedule(params.text_document.uri, server.debounce)

    @_feature(server, types.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(params: types.DidSaveTextDocumentParams):
        server.schedule(params.text_document.uri, 0)

    @_feature(server, types.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(params: types.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        waiting = server.pending.pop(uri, None)
        if waiting is not None:
            waiting.cancel()
        closed = server.analyses.pop(uri, None)
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        if closed is not None:  # its importers now read the file on disk
            changed = str(closed[1].path.resolve())
            for other, (_, analysis) in list(server.analyses.items()):
                if changed in analysis.depends_on:
                    server.schedule(other, 0, dependants=False)


def _register_queries(server: NinServer) -> None:
    """Hover, go to definition, completion, formatting and inlay hints."""

    def at(params) -> tuple[Analysis, int, int] | None:
        analysis = server.analysis(params.text_document.uri)
        if analysis is None:
            return None
        line, column = server.positions.from_client(analysis.text, params.position)
        return analysis, line, column

    @_feature(server, types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams):
        where = at(params)
        return features.hover(*where, server.positions) if where else None

    @_feature(server, types.TEXT_DOCUMENT_DEFINITION)
    def definition(params: types.DefinitionParams):
        where = at(params)
        return features.definition(*where, server.positions) if where else None

    @_feature(server, types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["(", ",", "["]),
              fallback=[])
    def complete(params: types.CompletionParams):
        document = server.workspace.text_documents.get(params.text_document.uri)
        if document is None:
            return []
        cached = server.analyses.get(params.text_document.uri)  # names from the last check: the text may not parse
        line, column = server.positions.from_client(document.source, params.position)
        items = completion.complete(cached[1] if cached else None, document.source, line, column)
        return types.CompletionList(is_incomplete=False, items=items)

    @_feature(server, types.TEXT_DOCUMENT_FORMATTING, fallback=[])
    def formatting(params: types.DocumentFormattingParams):
        document = server.workspace.text_documents.get(params.text_document.uri)
        if document is None:
            return []
        return features.formatting(server.path_of(params.text_document.uri), document.source, server.positions)

    @_feature(server, types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(), fallback=[])
    def inlay_hint(params: types.InlayHintParams):
        analysis = server.analysis(params.text_document.uri)
        if analysis is None:
            return []
        first, last = params.range.start.line, params.range.end.line
        return [hint for hint in features.inlay_hints(analysis, server.positions)
                if first <= hint.position.line <= last]


class BoundedInput:
    """The client's stream as pygls reads it, each read bounded before it is made: a header line
    reads at most :data:`limits.MAX_LSP_HEADER_BYTES`, and a message whose ``Content-Length``
    is over :data:`limits.MAX_LSP_MESSAGE_BYTES` ends the server with that error (reading it
    would allocate what the header claims; skipping it would leave the stream out of step)."""

    def __init__(self, stream):
        self.stream = stream

    def readline(self) -> bytes:
        return self.stream.readline(limits.MAX_LSP_HEADER_BYTES)

    def read(self, size: int) -> bytes:
        if size > limits.MAX_LSP_MESSAGE_BYTES:
            raise NindslError.one("E0401", f"the editor sent a message of {size:,} bytes (its Content-Length); "
                                           f"the most the language server reads is {limits.MAX_LSP_MESSAGE_BYTES:,}",
                                  None, "a spec is at most 1 MiB: is the client sending something else?")
        return self.stream.read(size)


def serve() -> int:
    """Run the server on stdin/stdout until the client ends it."""
    logging.basicConfig(level=logging.WARNING)  # to stderr: stdout carries the protocol
    build_server().start_io(stdin=BoundedInput(sys.stdin.buffer))
    return 0
