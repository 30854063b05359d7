import ArgumentParser
import Boot
import Foundation

/// Packs a directory into a newc cpio initramfs, or builds the standard test
/// initramfs from the fetched Debian guest.
struct InitramfsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "initramfs",
    abstract: "Write a newc cpio initramfs (optionally gzip-compressed).",
    discussion: """
      With --from DIR, packs the tree under DIR (files, directories, symlinks, modes; owner 0:0). \
      With --standard, packs busybox, its applet links, the virtio modules and an /init script \
      (--init FILE, or one that runs --run COMMANDS and powers off) from the fetched Debian guest.
      """)

  @Option(help: "Directory whose contents become the initramfs root.")
  var from: String?
  @Flag(help: "Build the standard busybox test initramfs from the fetched Debian guest.")
  var standard = false
  @Option(help: "With --standard: the /init script to use.")
  var `init`: String?
  @Option(
    name: .customLong("run"),
    help: "With --standard and no --init: shell commands for the generated /init.")
  var commands: String = "echo SWIFTVMM-BOOT-OK"
  @Option(
    help:
      "With --standard: an /init that mounts this block device (e.g. /dev/vda) and starts its /sbin/init."
  )
  var root: String?
  @Option(
    help:
      "With --standard: the guest cache directory (default: $SWIFTVMM_CACHE or ~/.cache/swiftvmm/linux)."
  )
  var cache: String?
  @Option(help: "Output file.")
  var output: String
  @Flag(help: "Compress with gzip.")
  var gzip = false
  @Flag(help: "Keep character and block device nodes found under --from.")
  var deviceNodes = false

  func run() throws {
    guard (from != nil) != standard else {
      InitramfsCommand.usageError("give exactly one of --from DIR and --standard")
    }
    do {
      var bytes: [UInt8]
      if let dir = from {
        bytes = CPIO.archive(try CPIO.entries(fromDirectory: dir, includeDeviceNodes: deviceNodes))
      } else {
        let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
        guard let guest = LinuxGuestImages.unpacked(in: dir) else {
          let missing = LinuxGuestImages.missingPieces(in: dir).joined(separator: ", ")
          throw InitramfsError.missing(
            "\(missing); run `swiftvmm guest fetch-linux --cache \(dir)` first")
        }
        let script: String
        if let device = root {
          script = DebianRootfs.rootInitScript(
            device: device, moduleList: StandardInitramfs.moduleListPath)
        } else if let i = self.`init` {
          script = try String(contentsOfFile: i, encoding: .utf8)
        } else {
          script = StandardInitramfs.initScript(commands: commands)
        }
        bytes = try StandardInitramfs.build(guest: guest, initScript: script, gzip: false)
      }
      if gzip { bytes = Gzip.compress(bytes) }
      OutputFile.write(bytes, to: output, what: "initramfs --output")
      print("wrote \(output) (\(bytes.count) bytes\(gzip ? ", gzip" : ""))")
    } catch let e as InitramfsError {
      fail("initramfs: \(e)", status: .unusableInput)
    } catch {
      fail("initramfs: \(error)", status: .unusableInput)
    }
  }
}
