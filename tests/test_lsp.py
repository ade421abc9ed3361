"""`nindsl lsp` driven over stdio by pytest-lsp's client, as an editor drives it.

One server runs for the module (started with ``python -m nindsl lsp``); each test opens its
own documents. Diagnostics are compared with what `nindsl check` prints for the same file.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")
from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "examples" / "broken" / "broken.nin"
CIFAR = ROOT / "specs" / "nin_cifar10.nin"
IMPORTS = ROOT / "examples" / "imports"

on_the_server = pytest.mark.asyncio(loop_scope="module")  # one server for the module


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=[sys.executable, "-m", "nindsl", "lsp"]))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=ROOT.as_uri()))
    yield
    await lsp_client.shutdown_session()


async def until(condition, timeout: float = 8.0):
    """Wait for ``condition()`` to hold (diagnostics arrive as notifications, debounced)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the server")
        await asyncio.sleep(0.02)


def open_document(client: LanguageClient, path: Path, text: str | None = None) -> str:
    uri = path.as_uri()
    client.diagnostics.pop(uri, None)
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="nin", version=1, text=path.read_text() if text is None else text)))
    return uri


def change(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.diagnostics.pop(uri, None)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


def close(client: LanguageClient, uri: str) -> None:
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))


def position_of(text: str, needle: str, offset: int = 0) -> types.Position:
    before = text[: text.index(needle) + offset]
    return types.Position(line=before.count("\n"), character=len(before) - before.rfind("\n") - 1)


def check_output(cli, path: Path) -> list[tuple[str, int, int, str, str | None]]:
    """(code, line, column, message, help) of each error `nindsl check` prints."""
    result = cli("check", path.name, cwd=path.parent)
    assert result.code == 1
    found = []
    for block in re.split(r"\n(?=\S+:\d+:\d+: error)", result.err.strip()):
        head = re.match(r"\S+:(\d+):(\d+): error\[(E\d+)\]: (.*)", block)
        if head:
            help = re.search(r"^help: (.*)$", block, re.M)
            found.append((head[3], int(head[1]), int(head[2]), head[4], help[1] if help else None))
    return found


@on_the_server
async def test_broken_spec_gets_the_diagnostics_of_check_at_the_same_positions(client: LanguageClient, cli):
    expected = check_output(cli, BROKEN)
    assert len(expected) == 5
    uri = open_document(client, BROKEN)
    await until(lambda: uri in client.diagnostics)
    got = [(d.code, d.range.start.line + 1, d.range.start.character + 1, d.message.split("\n")[0],
            next((line[6:] for line in d.message.split("\n") if line.startswith("help: ")), None))
           for d in client.diagnostics[uri]]
    assert got == expected
    first = client.diagnostics[uri][0]
    assert first.source == "nindsl" and first.severity == types.DiagnosticSeverity.Error
    assert (first.range.end.character - first.range.start.character) == len("mlpcov")

    fixed = (BROKEN.read_text().replace("mlpcov", "mlpconv").replace("strid ", "stride ")
             .replace("cel)", "ceil)").replace("5.0", "5").replace("clases", "classes").replace(", 12]", ", 10]"))
    change(client, uri, fixed, 2)
    await until(lambda: uri in client.diagnostics)
    assert list(client.diagnostics[uri]) == []
    close(client, uri)


@on_the_server
async def test_notes_become_related_information(client: LanguageClient, tmp_path):
    spec = tmp_path / "twice.nin"
    text = "network n() {\n    input image: f32[N, 3, 8, 8]\n    a: relu()\n    a: relu()\n}\n"
    uri = open_document(client, spec, text)
    await until(lambda: uri in client.diagnostics)
    (diagnostic,) = client.diagnostics[uri]
    assert diagnostic.code == "E0108" and diagnostic.range.start.line == 3
    (related,) = diagnostic.related_information
    assert related.message == "first labelled here"
    assert related.location.uri == uri and related.location.range.start.line == 2
    close(client, uri)


@on_the_server
async def test_hover_on_conv1_shows_its_shapes_and_parameters(client: LanguageClient):
    text = CIFAR.read_text()
    uri = open_document(client, CIFAR)
    await until(lambda: uri in client.diagnostics)
    assert list(client.diagnostics[uri]) == []
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(text, "conv1:", 2)))
    assert "3×32×32 → 96×32×32" in hover.contents.value
    assert "60,928 parameters" in hover.contents.value
    assert "61,931,520 multiply-adds" in hover.contents.value
    assert hover.range.start == position_of(text, "conv1:")

    hover = await client.text_document_hover_async(types.HoverParams(  # on the layer's name, not its label
        text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(text, "avgpool(3", 1)))
    assert "96×16×16 → 96×8×8" not in hover.contents.value and "192×16×16 → 192×8×8" in hover.contents.value
    close(client, uri)


@on_the_server
async def test_hover_on_a_block_call_shows_its_expansion(client: LanguageClient):
    spec = IMPORTS / "tiny_cifar.nin"
    text = spec.read_text()
    uri = open_document(client, spec)
    await until(lambda: uri in client.diagnostics)
    assert list(client.diagnostics[uri]) == []
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(text, "stage2:", 1)))
    value = hover.contents.value
    assert "block mlpconv_pool(widths, kernel, pad = 0, pool = \"max\")" in value
    assert "`32×16×16 → 64×8×8`" in value  # the second call's own layers, not the first's
    assert value.count("- **") == 2 and "mlpconv 5×5 p2 → 64, 64, 64" in value
    close(client, uri)


@on_the_server
async def test_go_to_definition_of_a_block_a_let_and_an_import(client: LanguageClient):
    spec = IMPORTS / "tiny_cifar.nin"
    library = IMPORTS / "lib" / "nin.nin"
    text, library_text = spec.read_text(), library.read_text()
    uri = open_document(client, spec)

    async def definition(needle: str, offset: int = 1):
        return await client.text_document_definition_async(types.DefinitionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(text, needle, offset)))

    block = await definition("mlpconv_pool(")
    assert block.uri == library.as_uri() and block.range.start == position_of(library_text, "mlpconv_pool(")
    drop = await definition("dropout(drop", len("dropout(") + 1)
    assert drop.uri == library.as_uri() and drop.range.start == position_of(library_text, "drop =")
    width = await definition("[width,", 2)
    assert width.uri == uri and width.range.start == position_of(text, "width = 64")
    classes = await definition("f32[N, classes]", len("f32[N, ") + 1)
    assert classes.uri == uri and classes.range.start == position_of(text, "classes = 10")
    imported = await definition('"lib/nin.nin"', 3)
    assert imported.uri == library.as_uri()
    assert await definition("mlpconv([width") is None  # a built-in layer has no definition in the spec
    close(client, uri)


@on_the_server
async def test_formatting_equals_fmt(client: LanguageClient, cli, tmp_path):
    messy = "let  w=4*2 # width\nnetwork n(classes=10){\n input image:f32[N,3,8,8]\n" \
            "conv(w,kernel=3,pad=1)\n  global_avgpool( )\n}\n"
    spec = tmp_path / "messy.nin"
    spec.write_text(messy)
    expected = cli("fmt", "--stdout", str(spec)).out
    assert expected != messy
    uri = open_document(client, spec)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=types.TextDocumentIdentifier(uri=uri), options=types.FormattingOptions(tab_size=4,
                                                                                             insert_spaces=True)))
    (edit,) = edits
    assert edit.new_text == expected
    assert edit.range.start == types.Position(line=0, character=0) and edit.range.end.line == messy.count("\n")
    close(client, uri)


@on_the_server
async def test_completion_offers_layers_keywords_and_names_in_scope(client: LanguageClient):
    text = CIFAR.read_text()
    uri = open_document(client, CIFAR)

    async def labels(needle: str, offset: int) -> set[str]:
        result = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(text, needle, offset)))
        return {item.label for item in result.items}

    statement = await labels("    pool1:", 4)
    assert {"mlpconv", "maxpool", "global_avgpool", "softmax", "repeat"} <= statement and "kernel" not in statement
    arguments = await labels("kernel = 5, pad = 2)\n    pool1", 0)
    assert {"kernel", "stride", "pad", "lr_scale", "classes"} <= arguments and "softmax" not in arguments
    assert await labels("    epochs", 4) >= {"epochs", "optimizer", "schedule", "crop_pad"}
    assert "sgd" in await labels("sgd(", 0)
    assert await labels("# Network in", 0) == {"import", "let", "block", "network", "train"}
    close(client, uri)


@on_the_server
async def test_inlay_hints_show_each_layers_output_shape(client: LanguageClient):
    text = CIFAR.read_text()
    uri = open_document(client, CIFAR)
    lines = text.split("\n")
    hints = await client.text_document_inlay_hint_async(types.InlayHintParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=len(lines), character=0))))
    shown = {lines[hint.position.line].split(":")[0].strip(): hint.label for hint in hints}
    assert shown["conv1"] == "→ 96×32×32" and shown["pool2"] == "→ 192×8×8" and shown["softmax()"] == "→ 10"
    conv1 = next(hint for hint in hints if lines[hint.position.line].strip().startswith("conv1"))
    assert conv1.position.character == len(lines[conv1.position.line])
    close(client, uri)


@on_the_server
async def test_an_importer_is_checked_again_when_the_imported_document_changes(client: LanguageClient, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(IMPORTS, project)
    spec, library = project / "tiny_cifar.nin", project / "lib" / "nin.nin"
    spec_uri = open_document(client, spec)
    library_uri = open_document(client, library)
    await until(lambda: spec_uri in client.diagnostics and library_uri in client.diagnostics)
    assert list(client.diagnostics[spec_uri]) == [] and list(client.diagnostics[library_uri]) == []

    change(client, library_uri, library.read_text().replace("let drop = 0.5", "let drop = 1.5"), 2)  # not saved
    await until(lambda: client.diagnostics.get(spec_uri))
    errors = client.diagnostics[spec_uri]  # both `dropout(drop)`
    assert [e.code for e in errors] == ["E0107", "E0107"] and "must be in [0, 1)" in errors[0].message
    assert errors[0].range.start.line == position_of(spec.read_text(), "dropout(drop").line

    change(client, library_uri, library.read_text(), 3)
    await until(lambda: list(client.diagnostics[spec_uri]) == [])

    change(client, library_uri, library.read_text().replace("block mlpconv_pool", "block mlpconv_poo"), 4)
    await until(lambda: client.diagnostics.get(spec_uri))
    assert [d.code for d in client.diagnostics[spec_uri]] == ["E0101", "E0101"]
    close(client, library_uri)
    close(client, spec_uri)


@on_the_server
async def test_mistakes_in_an_imported_file_are_shown_on_the_import(client: LanguageClient, tmp_path):
    (tmp_path / "lib.nin").write_text("let x = 1 +\n")
    spec = tmp_path / "main.nin"
    text = 'import "lib.nin"\nnetwork n() {\n    input image: f32[N, 3, 8, 8]\n}\n'
    uri = open_document(client, spec, text)
    await until(lambda: uri in client.diagnostics)
    (error,) = client.diagnostics[uri]
    assert error.code == "E0001" and error.range.start.line == 0 and "lib.nin" in error.message
    assert error.related_information[0].location.uri == (tmp_path / "lib.nin").as_uri()
    close(client, uri)


@on_the_server
async def test_the_server_survives_what_editors_send(client: LanguageClient, tmp_path):
    spec = tmp_path / "garbage.nin"
    uri = open_document(client, spec, "network (((( [[ {{ \x00 \u202e \"unterminated\n")
    await until(lambda: uri in client.diagnostics)
    assert client.diagnostics[uri]
    document = types.TextDocumentIdentifier(uri=uri)
    far = types.Position(line=10_000, character=10_000)
    assert await client.text_document_hover_async(types.HoverParams(text_document=document, position=far)) is None
    assert await client.text_document_definition_async(types.DefinitionParams(text_document=document,
                                                                               position=far)) is None
    await client.text_document_completion_async(types.CompletionParams(text_document=document, position=far))
    assert not await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=document, options=types.FormattingOptions(tab_size=4, insert_spaces=True)))
    unknown = types.TextDocumentIdentifier(uri=(tmp_path / "never-opened.nin").as_uri())
    assert await client.text_document_hover_async(types.HoverParams(text_document=unknown, position=far)) is None
    close(client, uri)

    text = CIFAR.read_text()  # and it still answers
    uri = open_document(client, CIFAR)
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(text, "conv3:", 1)))
    assert "370,954 parameters" in hover.contents.value
    close(client, uri)


def test_a_failing_handler_answers_with_its_fallback_and_logs():
    from nindsl.lsp.server import build_server

    server = build_server()
    logged = []
    server.window_log_message = logged.append
    handler = server.protocol.fm.features[types.TEXT_DOCUMENT_INLAY_HINT]
    assert handler(None) == []  # `None.text_document` raises inside: caught, logged
    assert "AttributeError" in logged[0].message and logged[0].type == types.MessageType.Error
    hover = server.protocol.fm.features[types.TEXT_DOCUMENT_HOVER]
    assert hover(None) is None and len(logged) == 2


def test_lsp_without_pygls_says_how_to_install_it(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygls", None)
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)
    monkeypatch.delitem(sys.modules, "nindsl.lsp.server", raising=False)
    result = cli("lsp")
    assert result.code == 1  # a refusal with a code, as `draw` without matplotlib (2: a command line argparse refuses)
    assert result.err == "error[E0504]: `nindsl lsp` needs pygls\nhelp: pip install 'nindsl[lsp]'\n1 error\n"


def test_a_burst_of_changes_is_checked_once_after_the_pause():
    from nindsl.lsp.server import build_server

    server = build_server(debounce=0.1)
    checked = []
    server.publish = checked.append
    uri = "file:///nowhere/x.nin"

    async def typing():
        for _ in range(5):
            server.schedule(uri, server.debounce)
            await asyncio.sleep(0.01)
        assert checked == []  # still typing
        await asyncio.sleep(0.4)

    asyncio.run(typing())
    assert checked == [uri]


def test_positions_count_utf16_units_as_lsp_clients_do():
    from nindsl.kernel.diagnostics import Source, Span
    from nindsl.lsp.positions import Positions

    text = "let x = 1  # \U0001F600 then\nlet y = x\n"
    span = Span(Source("a.nin", text), 1, 15, 1, 19)  # `then`, after a character outside the BMP
    utf16, utf32 = Positions(types.PositionEncodingKind.Utf16), Positions(types.PositionEncodingKind.Utf32)
    assert utf16.range(span).start == types.Position(line=0, character=15)
    assert utf32.range(span).start == types.Position(line=0, character=14)
    assert utf16.from_client(text, types.Position(line=0, character=15)) == (1, 15)
    assert utf16.from_client(text, types.Position(line=1, character=8)) == (2, 9)


@on_the_server
async def test_hover_inside_a_block_shows_the_layer_of_every_call(client: LanguageClient, tmp_path):
    spec = tmp_path / "pairs.nin"
    text = ("block pair(out) {\n    conv(out, kernel = 3, pad = 1)\n}\n"
            "network n() {\n    input image: f32[N, 3, 8, 8]\n    a: pair(4)\n    b: pair(6)\n}\n")
    uri = open_document(client, spec, text)
    await until(lambda: uri in client.diagnostics)
    assert list(client.diagnostics[uri]) == []
    document = types.TextDocumentIdentifier(uri=uri)
    hover = await client.text_document_hover_async(types.HoverParams(text_document=document,
                                                                     position=position_of(text, "conv(", 1)))
    assert "`3×8×8 → 4×8×8` · 112 parameters" in hover.contents.value
    assert "`4×8×8 → 6×8×8` · 222 parameters" in hover.contents.value
    call = await client.text_document_hover_async(types.HoverParams(text_document=document,
                                                                    position=position_of(text, "b: pair", 4)))
    assert "`4×8×8 → 6×8×8`" in call.contents.value and "3×8×8" not in call.contents.value

    library = text.split("network")[0]  # the block alone: no network to take shapes from
    change(client, uri, library, 2)
    await until(lambda: uri in client.diagnostics)
    hover = await client.text_document_hover_async(types.HoverParams(text_document=document,
                                                                     position=position_of(library, "conv(", 1)))
    assert "depend on the call" in hover.contents.value
    close(client, uri)
