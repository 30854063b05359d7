import ArgumentParser
import Engine
import Foundation
import Logging
import VMM

@main
struct SwiftVMMCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "swiftvmm",
    abstract: "A virtual machine monitor for x86-64 guests, written in Swift.",
    version: SwiftVMMCommand.version,
    subcommands: [
      Run.self, MMUCompare.self, Info.self, CPUIDCommand.self, Guest.self, InitramfsCommand.self,
      LinuxCommand.self, Bench.self,
    ],
    defaultSubcommand: Run.self)

  static let version = Machine.softwareVersion

  /// A first word that is not an option must name a subcommand: `swiftvmm rn`
  /// is a typo for `run`, not an unexpected argument to the default `run`.
  static func main() {
    let args = Array(CommandLine.arguments.dropFirst())
    if let first = args.first, !first.hasPrefix("-") {
      let names =
        configuration.subcommands.map { $0._commandName } + ["help"]
      if !names.contains(first) {
        let hint = NearestName.suggest(first, among: names).map { "; did you mean '\($0)'?" } ?? ""
        fail(
          "unknown subcommand '\(first)'\(hint) (see 'swiftvmm --help')", status: .usage)
      }
    }
    main(args)
  }
}

/// Flags every subcommand that logs shares.
struct LoggingOptions: ParsableArguments {
  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
  var logLevel: String = "warning"

  /// Runs while parsing, so a bad level prints the subcommand's own usage.
  func validate() throws {
    guard Logger.Level(rawValue: logLevel.lowercased()) != nil else {
      throw ValidationError(
        "unknown log level '\(logLevel)'; choose trace, debug, info, notice, warning, error or critical"
      )
    }
  }

  func bootstrap() throws -> Logger {
    guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
      throw ValidationError("unknown log level '\(logLevel)'")
    }
    // Through LogSink, so the API's PUT /logger can move the log and change its level.
    LogSink.shared.level = level
    LoggingSystem.bootstrap { LogSink.shared.handler(label: $0) }
    var l = Logger(label: "swiftvmm")
    l.logLevel = level
    return l
  }
}
