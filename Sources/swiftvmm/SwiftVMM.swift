import ArgumentParser
import Foundation
import Logging
import VMM

@main
struct SwiftVMMCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "swiftvmm",
    abstract: "A virtual machine monitor for x86-64 guests, written in Swift.",
    subcommands: [
      Run.self, MMUCompare.self, Info.self, CPUIDCommand.self, Guest.self, InitramfsCommand.self,
      LinuxCommand.self, Bench.self,
    ],
    defaultSubcommand: Run.self)
}

/// Flags every subcommand that logs shares.
struct LoggingOptions: ParsableArguments {
  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
  var logLevel: String = "warning"

  func bootstrap() throws -> Logger {
    guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
      throw ValidationError("unknown log level '\(logLevel)'")
    }
    LoggingSystem.bootstrap { label in
      var h = StreamLogHandler.standardError(label: label)
      h.logLevel = level
      return h
    }
    var l = Logger(label: "swiftvmm")
    l.logLevel = level
    return l
  }
}

/// Prints a one-line error and exits with `status`.
func fail(_ message: String, status: Int32) -> Never {
  FileHandle.standardError.write(Data("swiftvmm: \(message)\n".utf8))
  exit(status)
}
