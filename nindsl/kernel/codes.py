"""What each diagnostic code means, with an example and a fix.

``nindsl explain CODE`` prints one of these (:func:`render_text`) and ``docs/errors.md``
is all of them (:func:`render_markdown`), generated with::

    python -m nindsl.kernel.codes > docs/errors.md

The one-line meanings stay in :data:`nindsl.kernel.diagnostics.CODES`; every code there
has an :class:`Explanation` here (a test keeps the two in step). Codes E0001 to E0401
come from a spec, so their example is a small spec that produces exactly that code (a
test checks each one); codes E0501 to E0505 come from files and command lines, so their
example is a command and what it prints (a test runs each one).
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass

from . import limits
from .diagnostics import CODES

#: Characters an example cannot show (they are invisible) are written as ``⟨U+XXXX⟩``.
_MARKER = re.compile(r"⟨U\+([0-9A-F]{4,6})⟩")


@dataclass(frozen=True)
class File:
    """One file of a spec example: its name, its text and how it is saved."""

    name: str
    text: str
    encoding: str = "utf-8"
    caption: str | None = None  # shown above the file's text, e.g. its name

    def content(self) -> bytes:
        """The file's bytes: markers made the characters they stand for, then encoded."""
        return _MARKER.sub(lambda match: chr(int(match.group(1), 16)), self.text).encode(self.encoding)


@dataclass(frozen=True)
class Explanation:
    """A code's meaning, an example that produces it and how to fix it.

    A spec example is ``files`` (the first is the one checked); a command-line example is
    ``console``: a ``$ nindsl ...`` line and exactly what it prints on stderr, run in a
    folder that ``situation`` describes.
    """

    code: str
    meaning: str
    fix: str
    files: tuple[File, ...] = ()
    console: str | None = None
    situation: str | None = None  # shown above ``console``: the files it is run on

    @property
    def title(self) -> str:
        return CODES[self.code]


def _spec(text: str, name: str = "example.nin", encoding: str = "utf-8", caption: str | None = None) -> tuple[File]:
    return (File(name, textwrap.dedent(text).strip("\n") + "\n", encoding, caption),)


def _files(*pairs: tuple[str, str]) -> tuple[File, ...]:
    return tuple(File(name, textwrap.dedent(text).strip("\n") + "\n", caption=f"`{name}`") for name, text in pairs)


def _console(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


_EXPLANATIONS = (
    # --- text ---------------------------------------------------------------------------
    Explanation(
        "E0001",
        "The text does not follow the grammar of a spec: a character that has no place in "
        "the language (a single quote, a semicolon), or a token where another is needed (a "
        "missing comma between arguments, a keyword used as a name), or a digit of another "
        "script (`৪`, `٤`, `４`: Python would read it as its value, and numbers are written with "
        "the ASCII digits 0-9; the message names its code point). The caret points at the "
        "first thing the parser could not take.",
        "Correct the text at the caret. Strings are written in double quotes (`\"digits\"`), "
        "arguments are separated by commas, and statements need no terminator.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                pool1: maxpool(3, stride = 2, round = 'ceil')
                global_avgpool()
            }
        """),
    ),
    Explanation(
        "E0002",
        "A bracket is left open: a `(` or `[` whose line ends without closing it, so that the "
        "next line reads as more arguments and the parser fails there, or a `{` still open at "
        "the end of the file. The error is reported where the bracket should have been "
        "closed, not where the parser gave up, and a note points at the opening bracket.",
        "Add the missing `)`, `]` or `}` where the help says.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                conv1: mlpconv([192, 160, 10], kernel = 5, pad = 2
                global_avgpool()
            }
        """),
    ),
    Explanation(
        "E0003",
        "The spec contains an invisible or control character: a zero-width space or joiner, "
        "a soft hyphen, a byte order mark in the middle of the text, a bidirectional override "
        "(the \"Trojan Source\" characters, CVE-2021-42574) or an ASCII control character other "
        "than tab. Such a spec does not say what it shows on screen, so it is refused wherever "
        "the character is, comments included. Text pasted from web pages or chat is the usual "
        "source.",
        "Delete the character at the caret (an editor that shows invisible characters helps), "
        "or retype the line.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                conv⟨U+200B⟩1: mlpconv([192, 160, 10], kernel = 5, pad = 2)
                global_avgpool()
            }
        """, caption="Here ⟨U+200B⟩ stands for a zero-width space, which shows as nothing"),
    ),
    Explanation(
        "E0004",
        "The file is not valid UTF-8: a spec is read as UTF-8 only, and the caret points at the "
        "first byte that cannot be decoded. Files written by old editors in Latin-1 or "
        "Windows-1252, with an accented letter in a comment, are the usual cause.",
        "Save the file as UTF-8 (most editors offer it under \"Save with encoding\"; "
        "`iconv -f latin1 -t utf-8` converts one on the command line).",
        files=_spec("""
            # Réseau NiN pour CIFAR-10
            network t() {
                input image: f32[N, 3, 32, 32]
            }
        """, encoding="latin-1", caption="Saved as Latin-1 (ISO 8859-1) rather than UTF-8"),
    ),
    Explanation(
        "E0005",
        "A number is too large: a literal with more than 24 characters, an integer above "
        "2^40 (1,099,511,627,776), or arithmetic whose result is that large or overflows. "
        "No size, count or setting of a network needs such a number; it is refused before it "
        "is used so that checking a spec stays fast whatever it says.",
        "Look for a typo (extra digits, a missing comma between two numbers) and write the "
        "value meant.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 3200000000000000]
            }
        """),
    ),
    Explanation(
        "E0006",
        "The spec has no network: the file is empty, holds only comments, or (when it is "
        "loaded to be compiled, run or trained) defines only blocks and constants. `nindsl "
        "check` accepts a file of blocks and constants on its own, as a library meant to be "
        "imported, but not an empty one.",
        "Write a `network name(...) { input ...: f32[...] ... }` definition, or, for a library "
        "of blocks, compile the spec that imports it.",
        files=_spec("""
            # TODO: the network
        """),
    ),
    # --- names and arguments --------------------------------------------------------------
    Explanation(
        "E0101",
        "A statement calls something that is neither a layer nindsl knows (`mlpconv`, `conv`, "
        "`maxpool`, `avgpool`, `global_avgpool`, `dropout`, `dense`, ...) nor a block defined "
        "in the file or in a file it imports. The help names the closest match.",
        "Correct the spelling, define the block with `block name(...) { ... }`, or add the "
        "`import` of the file that defines it.",
        files=_spec("""
            network t(classes = 10) {
                input image: f32[N, 3, 32, 32]
                conv1: mlpcov([192, 160, classes], kernel = 5, pad = 2)
                global_avgpool()
            }
        """),
    ),
    Explanation(
        "E0102",
        "A keyword argument names no parameter of the layer or block called, or a `train` "
        "section sets something that is not a training setting. The help names the closest "
        "parameter, or lists them.",
        "Correct the name; the help shows the layer's usage.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                maxpool(3, strid = 2)
            }
        """),
    ),
    Explanation(
        "E0103",
        "The same argument is given twice in one call (twice by keyword, or once by position "
        "and once by keyword), or a `train` section sets the same setting twice. A note "
        "points at the first.",
        "Keep one of the two.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                mlpconv([192, 160, 96], kernel = 5, pad = 1, pad = 2)
            }
        """),
    ),
    Explanation(
        "E0104",
        "A call leaves out an argument that has no default (such as `mlpconv`'s `channels` "
        "and `kernel`, or a block's parameter without `= value`), or a network parameter has no "
        "default and no `--set` gives it one.",
        "Give the argument; the help shows the layer's usage. For a network parameter, write "
        "a default (`classes = 10`) or pass `--set classes=10` on the command line.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                mlpconv(kernel = 3)
            }
        """),
    ),
    Explanation(
        "E0105",
        "A value has the wrong type for where it is used: a fraction where a whole number is "
        "needed (a kernel size, a channel count, a repeat count), a number where a list of "
        "channel counts is needed, a string or `true`/`false` in arithmetic, or the wrong kind "
        "of call for a setting such as `init` or `optimizer`.",
        "Write a value of the type the message names. For sizes computed by division, use "
        "`//`, which keeps whole numbers whole (`channels // 2`), instead of `/`.",
        files=_spec("""
            network t(width = 96) {
                input image: f32[N, 3, 32, 32]
                mlpconv([width, width / 2], kernel = 5, pad = 2)
            }
        """),
    ),
    Explanation(
        "E0106",
        "A value that must be a number (a size, a width, a probability) is a name that nothing "
        "defines: not a `let` constant of the file or of a file it imports, and not a "
        "parameter of the enclosing block or network. (Bare names are also the values of "
        "choices, as in `round = ceil`, and the batch dimension `N`.) The help names the "
        "closest defined name. Order matters: a `let` sees only the names defined above it, and "
        "one that uses a name defined below it (by a later `let` or an import) is reported at "
        "that name. An unknown name in a `let` that nothing uses is reported at the `let`.",
        "Correct the spelling, or define the name (`let drop = 0.5`, or a parameter "
        "`network t(classes = 10)`).",
        files=_spec("""
            network t(classes = 10) {
                input image: f32[N, 3, 32, 32]
                mlpconv([192, 160, clases], kernel = 5, pad = 2)
                global_avgpool()
                output probs: f32[N, classes]
            }
        """),
    ),
    Explanation(
        "E0107",
        "A value has the right type but is outside what is allowed: a size or count below 1, "
        "a dropout probability outside [0, 1), a choice that is not one of the options (such "
        "as `round = cel`), a division by zero, pooling padding wider than half the window, a "
        "ceil-rounded pooling window that would start past its input (engines disagree on "
        "such a window), `nesterov` without momentum, or a label that cannot name a PyTorch "
        "module attribute.",
        "Use a value in the range or among the choices the message gives; the help suggests "
        "one where it can.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                mlpconv([192], kernel = 5, pad = 2)
                dropout(1.5)
            }
        """),
    ),
    Explanation(
        "E0108",
        "Something is defined twice: two `let` constants or blocks with the same name in one "
        "file, a network parameter declared twice, two layers with the same label (a block "
        "called twice gives its labelled layers the same names), a second `network` in one "
        "spec or a second `train` section, a constant or block that two imports define (or "
        "that a `let` or `block` defines again after an import brought it). A note points at "
        "the first definition.",
        "Rename or remove one of the two. A labelled call of a block (`stage1: my_block(...)`) "
        "gives the block's layers distinct names; a second network goes into a file of its "
        "own, sharing blocks through `import`.",
        files=_spec("""
            let drop = 0.5
            let drop = 0.25

            network t() {
                input image: f32[N, 3, 32, 32]
                dropout(drop)
            }
        """),
    ),
    Explanation(
        "E0109",
        "A call gives more arguments by position than the layer or block has parameters. "
        "Often a keyword was meant (`maxpool(3, 2)` is fine, but the third and later "
        "parameters are easier to read by name).",
        "Remove the extra arguments or give them by keyword; the help shows the usage.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                dropout(0.5, 0.5)
            }
        """),
    ),
    Explanation(
        "E0110",
        "A statement is where it may not be: `input` must be the first statement of a network "
        "and `output` (which may be left out) the last; a network has one of each and needs an "
        "`input`; and blocks and `repeat` bodies hold layers only, not `input` or `output`.",
        "Move the declaration: `input` first, `output` last, both directly in the network.",
        files=_spec("""
            network t() {
                mlpconv([16], kernel = 3)
                input image: f32[N, 3, 32, 32]
            }
        """),
    ),
    Explanation(
        "E0111",
        "A block calls itself, directly or through other blocks, so it would expand forever. "
        "The message shows the chain of calls and the notes where each is made.",
        "Break the chain: a block cannot recurse. To stack a block several times, call it "
        "inside `repeat n { ... }` in the network instead.",
        files=_spec("""
            block stage(width) {
                mlpconv([width, width], kernel = 3, pad = 1)
                stage(width)
            }

            network t() {
                input image: f32[N, 3, 32, 32]
                stage(64)
            }
        """),
    ),
    # --- shapes ---------------------------------------------------------------------------
    Explanation(
        "E0201",
        "A convolution or pooling window is larger than the (padded) height or width that "
        "reaches it: the layers before it have shrunk the image too far. A note traces the "
        "shape through every layer up to the one that fails. When the fault is pooling that "
        "rounds down, the help says which pooling layers would fit with `round = ceil`, as "
        "Caffe's reference models use.",
        "Read the shape trace: use a smaller kernel or stride, add padding, remove a pooling "
        "layer, start from a larger input, or round pooling up where the help says so.",
        files=_spec("""
            network t() {
                input image: f32[N, 1, 8, 8]
                mlpconv([16], kernel = 3)
                maxpool(2)
                mlpconv([16], kernel = 3)
                mlpconv([16], kernel = 3)
                global_avgpool()
            }
        """),
    ),
    Explanation(
        "E0202",
        "A layer gets a tensor of the wrong rank: a convolution or pooling layer needs an "
        "image [N, C, H, W] but comes after `global_avgpool()` or `flatten()`, which leave "
        "[N, C]; or `dense()` or `softmax()` gets an image that has not been flattened. "
        "Training also needs a network whose output is [N, classes].",
        "Put convolutions and pooling before global pooling and `flatten()`, and "
        "`global_avgpool()` or `flatten()` before `dense()`.",
        files=_spec("""
            network t() {
                input image: f32[N, 1, 8, 8]
                global_avgpool()
                mlpconv([16], kernel = 3)
            }
        """),
    ),
    Explanation(
        "E0203",
        "The network's `output` declaration does not match the shape its layers produce, or it "
        "names another batch dimension than the `input`. The declaration is a promise checked "
        "against the layers; when the last `mlpconv` has the wrong width, the help names it, "
        "and when the network ends with an image instead of scores, the help says to end it "
        "with `global_avgpool()`.",
        "Make the last layers produce the declared shape (usually: the last width of the last "
        "`mlpconv` equals `classes`, followed by `global_avgpool()`), or correct the "
        "declaration.",
        files=_spec("""
            network t(classes = 10) {
                input image: f32[N, 3, 32, 32]
                conv1: mlpconv([192, 160, 12], kernel = 5, pad = 2)
                global_avgpool()
                output probs: f32[N, classes]
            }
        """),
    ),
    Explanation(
        "E0204",
        "The `input` declaration is one nindsl cannot build: its element type is not `f32` "
        "(the only type supported), or its rank is neither 4 (images, [N, C, H, W]) nor 2 "
        "(vectors, [N, features]). A grey image needs its channel dimension too.",
        "Declare `input name: f32[N, C, H, W]` (with C = 1 for grey images) or "
        "`f32[N, features]`.",
        files=_spec("""
            network t() {
                input image: f32[N, 32, 32]
                mlpconv([16], kernel = 3)
            }
        """),
    ),
    # --- files and imports ------------------------------------------------------------------
    Explanation(
        "E0301",
        "A file cannot be read or written: a spec, an imported file, a checkpoint, an input "
        "array or a profile that does not exist, is a folder or cannot be opened, or an output "
        "that cannot be created. An `import` is resolved relative to the file that contains "
        "it.",
        "Check the path (for an import: relative to the importing file) and its permissions.",
        files=_spec("""
            import "lib/blocks.nin"

            network t() {
                input image: f32[N, 3, 32, 32]
            }
        """),
    ),
    Explanation(
        "E0302",
        "Files import each other in a circle, so none of them can be read first. The message "
        "shows the circle of file names.",
        "Move what both files need into a third file that both import, and import nothing "
        "back from it.",
        files=_files(("net.nin", """
            import "blocks.nin"

            network t(classes = 10) {
                input image: f32[N, 3, 32, 32]
                head(classes)
            }
        """), ("blocks.nin", """
            import "net.nin"

            block head(classes) {
                mlpconv([192, classes], kernel = 1)
                global_avgpool()
            }
        """)),
    ),
    Explanation(
        "E0303",
        "A path written in a spec leads outside the project folder (the folder of the spec "
        "being checked, symlinks followed), or is absolute. This holds for `import` and for "
        "the `data` setting of a `train` section: a spec from elsewhere cannot make nindsl read "
        "files outside its own folder.",
        "Keep imported files inside the spec's folder (copy or move them there). Data from "
        "elsewhere is given on the command line, which may name any path: `nindsl train "
        "spec.nin --data cifar10:/data/cifar-10`.",
        files=_spec("""
            import "../shared/blocks.nin"

            network t() {
                input image: f32[N, 3, 32, 32]
            }
        """),
    ),
    # --- limits -----------------------------------------------------------------------------
    Explanation(
        "E0401",
        "The spec asks for more than nindsl's limits, which keep checking a spec finite in "
        "time and memory whatever it says: a file of at most 1 MiB, lists of at most "
        f"{limits.MAX_LIST:,} items, `repeat` counts of at most {limits.MAX_REPEAT:,}, blocks and "
        f"repeats nested at most {limits.MAX_NESTING} deep, expressions at most "
        f"{limits.MAX_EXPRESSION_DEPTH} deep, imports chained at most {limits.MAX_IMPORT_DEPTH} deep, "
        f"dimensions of at most {limits.MAX_DIM:,}, `resize` of at most {limits.MAX_RESIZE:,}, "
        f"networks of at most {limits.MAX_LAYERS:,} layers and {limits.MAX_PARAMETERS:,} parameters. "
        "Files are held to limits too, checked before they are read: a checkpoint's tensors "
        "take at most 16 bytes per parameter of the spec (an .npz's sizes as its zip declares "
        "them, before anything is decompressed); `nindsl draw` draws at most "
        f"{limits.MAX_DRAW_BOXES:,} boxes (a layer, or one convolution of an mlpconv), at most "
        f"{limits.MAX_DPI:,} dpi and {limits.MAX_DRAW_PIXELS:,} pixels; the language server reads "
        f"messages of at most {limits.MAX_LSP_MESSAGE_BYTES:,} bytes. The same code refuses work "
        "beyond a machine's means (a benchmark batch larger than its memory) and an int8 build of "
        "trained weights that loses more accuracy than nindsl allows (docs/precision.md).",
        "Stay within the limit the message names; a network that really needs more is "
        "beyond what nindsl builds. An int8 build that loses too much: calibrate on images "
        "like the ones it will see, or write it anyway with --accept-accuracy-loss.",
        files=_spec("""
            network t() {
                input image: f32[N, 3, 32, 32]
                repeat 100000 {
                    mlpconv([16], kernel = 3, pad = 1)
                }
            }
        """),
    ),
    # --- weights and artifacts ------------------------------------------------------------------
    Explanation(
        "E0501",
        "A checkpoint given with `--weights` does not fit the spec: a tensor a layer needs is "
        "missing, has another shape or is not floating point, or the file holds tensors the "
        "spec has no place for. Each mismatch points at its layer.",
        "Use the checkpoint with the spec and `--set` values it was trained with "
        "(`nindsl compile tiny.nin --set classes=100 --weights other.npz`), or train the "
        "spec again.",
        situation="With `other.npz` trained from `tiny.nin` with `--set classes=100`, where the spec says "
                  "`classes = 10`",
        console=_console("""
            $ nindsl compile tiny.nin --weights other.npz
            tiny.nin:3:5: error[E0501]: `conv1.1.weight` in `other.npz` has shape [100, 16, 1, 1]; layer `conv1` needs [10, 16, 1, 1]
               |
             3 |     conv1: mlpconv([16, classes], kernel = 3, pad = 1)
               |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
            help: was the checkpoint trained from another spec or with other --set values?
            tiny.nin:3:5: error[E0501]: `conv1.1.bias` in `other.npz` has shape [100]; layer `conv1` needs [10]
               |
             3 |     conv1: mlpconv([16, classes], kernel = 3, pad = 1)
               |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
            help: was the checkpoint trained from another spec or with other --set values?
            2 errors
        """),
    ),
    Explanation(
        "E0502",
        "A file nindsl was asked to load is refused or damaged: a pickle (a PyTorch `.pt` or "
        "`.pth` file, which could run code when loaded), a truncated or garbled safetensors or "
        ".npz file, a file that is not a valid ONNX model, a damaged artifact folder, or a "
        "training run to `--resume` that belongs to another spec.",
        "Give the file in a format nindsl reads: weights as safetensors or .npz, as `nindsl "
        "train` writes them; an ONNX model or artifact compiled again with `nindsl compile`; "
        "for `--resume`, the output folder of a run of the same spec.",
        situation="With `model.pt` a PyTorch checkpoint (a pickle) beside `tiny.nin`",
        console=_console("""
            $ nindsl compile tiny.nin --weights model.pt
            error[E0502]: `model.pt`: is a pickle (a PyTorch .pt/.pth file?); nindsl never loads pickles, which can run code
            help: save the weights with safetensors, or `nindsl train`
            1 error
        """),
    ),
    Explanation(
        "E0503",
        "The data given to run or train a network does not fit it: an input array of another "
        "shape than the network's input (only the batch size may differ), integers where "
        "float32 values are needed, NaN or infinite values, files that are neither .npy arrays "
        "nor readable images, or training data whose images or labels do not fit the network.",
        "Give data of the shape and type the message names: float32 arrays, images scaled "
        "to [0, 1], one example per row of the batch dimension.",
        situation="With `batch.npy` holding two 3×32×32 colour images, and `tiny.nin` a network that takes "
                  "1×8×8 grey ones",
        console=_console("""
            $ nindsl run tiny.nin --input batch.npy
            error[E0503]: the input has shape [2, 3, 32, 32], but `image` expects [N, 1, 8, 8]
            help: give an array of that shape (the batch size may vary)
            1 error
        """),
    ),
    Explanation(
        "E0504",
        "A command-line value is not one nindsl can use: an unknown backend, engine, target "
        "or device, a `--set` for a parameter the network does not have, an option that does "
        "nothing with the others given (tuning options without tuning), a batch size that is "
        "not a whole number, a build or device that needs TVM or a GPU this machine lacks, "
        "or an error code `nindsl explain` does not know.",
        "Correct the option as the message and help say; `nindsl COMMAND --help` lists each "
        "command's options.",
        situation="With `tiny.nin` any spec",
        console=_console("""
            $ nindsl compile tiny.nin --trials 200
            error[E0504]: --trials is a tuning budget: it needs --tune
            1 error
        """),
    ),
    Explanation(
        "E0505",
        "An output would replace something nindsl may not replace, so the command refused before "
        "doing any work: a file of another kind than that output writes (a spec, a text file, "
        "your own script), a folder holding files nindsl did not write (an artifact, bundle or "
        "training-run folder with your notes in it), one of the command's own inputs, or the "
        "same path as another of its outputs; or another nindsl is writing that output now.",
        "Choose another output path, or move the file or folder away yourself; wait for the other "
        "nindsl to finish. An output replaces only what the same command wrote before.",
        situation="With `tiny.nin` any spec",
        console=_console("""
            $ nindsl compile tiny.nin -o tiny.nin
            error[E0505]: -o `tiny.nin` is this command's input `tiny.nin`: an output never replaces an input
            help: name the output something else
            1 error
        """),
    ),
)

#: Every code's explanation (the same keys as :data:`CODES`, a test checks).
EXPLANATIONS: dict[str, Explanation] = {e.code: e for e in _EXPLANATIONS}


def code_ranges() -> str:
    """The codes as ranges, e.g. ``E0001–E0006, E0101–E0111, ...``."""
    groups: dict[str, list[str]] = {}
    for code in CODES:
        groups.setdefault(code[:3], []).append(code)
    return ", ".join(g[0] if len(g) == 1 else f"{g[0]}–{g[-1]}" for g in groups.values())


def _example_markdown(explanation: Explanation) -> list[str]:
    lines: list[str] = []
    for file in explanation.files:
        if file.caption:
            lines += [f"{file.caption}:", ""]
        lines += ["```nin", *file.text.rstrip("\n").split("\n"), "```", ""]
    if explanation.console:
        if explanation.situation:
            lines += [f"{explanation.situation}:", ""]
        lines += ["```console", *explanation.console.rstrip("\n").split("\n"), "```", ""]
    return lines


def render_markdown() -> str:
    """The whole of ``docs/errors.md``."""
    lines = ["# nindsl error codes", "",
             "Every error nindsl reports carries a code; this page explains each one, with an example and "
             "a fix, and `nindsl explain CODE` prints the same in a terminal (generated from "
             "`nindsl/kernel/codes.py` by `python -m nindsl.kernel.codes > docs/errors.md`: edit that "
             "file, not this one).", ""]
    for code in CODES:  # in the table's order; a code without an explanation is a KeyError
        explanation = EXPLANATIONS[code]
        lines += [f"## {explanation.code}: {explanation.title}", "", explanation.meaning, ""]
        lines += _example_markdown(explanation)
        lines += [f"**Fix:** {explanation.fix}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_text(code: str) -> str:
    """One code's explanation for a terminal (``nindsl explain CODE``); KeyError if unknown."""
    explanation = EXPLANATIONS[code]
    wrap = textwrap.TextWrapper(width=88, break_long_words=False, break_on_hyphens=False)
    lines = [f"{explanation.code}: {explanation.title}", "", *wrap.wrap(explanation.meaning), "", "Example:", ""]
    for file in explanation.files:
        if file.caption:
            lines += [*wrap.wrap(f"{file.caption}:"), ""]
        lines += [f"    {line}".rstrip() for line in file.text.rstrip("\n").split("\n")] + [""]
    if explanation.console:
        if explanation.situation:
            lines += [*wrap.wrap(f"{explanation.situation}:"), ""]
        lines += [f"    {line}".rstrip() for line in explanation.console.rstrip("\n").split("\n")] + [""]
    lines += wrap.wrap(f"Fix: {explanation.fix}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(render_markdown().encode("utf-8"))
