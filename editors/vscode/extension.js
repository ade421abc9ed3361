// Starts `nindsl lsp` (the language server, `pip install 'nindsl[lsp]'`) for .nin files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("nindsl").get("command", ["nindsl", "lsp"]);
  client = new LanguageClient("nindsl", "nindsl", { command, args }, {
    documentSelector: [{ scheme: "file", language: "nin" }, { scheme: "untitled", language: "nin" }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
