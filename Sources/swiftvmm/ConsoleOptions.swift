import ArgumentParser
import VMM

/// How the interactive console and a guest reset behave, shared by `run` and `linux`.
struct ConsoleOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Console escape key: ctrl-a (default), ctrl-X or ^X for another letter, or none.",
      discussion: "Escape then x quits, h prints help; escape twice sends it to the guest.",
      valueName: "key"))
  var escapeKey: String = "ctrl-a"
  @Flag(help: "End the VM when the guest resets, instead of rebooting it.")
  var noReboot = false

  func escape() throws -> ConsoleEscape {
    guard let key = ConsoleEscape.parse(escapeKey) else {
      throw ValidationError(
        "--escape-key '\(escapeKey)': use ctrl-LETTER (e.g. ctrl-a, ctrl-]), ^LETTER or none")
    }
    return ConsoleEscape(key: key)
  }
}
