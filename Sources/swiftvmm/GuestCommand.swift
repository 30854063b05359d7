import ArgumentParser
import Boot
import Foundation

struct Guest: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Fetch and prepare guest images.",
    subcommands: [FetchLinux.self, FetchRootfs.self, FetchPackage.self])
}

/// Downloads the Debian reference guest with apt-get and unpacks it with dpkg.
/// Nothing here is committed: everything goes to the cache directory.
struct FetchLinux: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fetch-linux",
    abstract: "Download linux-image-cloud-amd64 and busybox-static and unpack them into the cache.",
    discussion: """
      The cache is --cache, else $SWIFTVMM_CACHE, else ~/.cache/swiftvmm/linux. \
      Runs `apt-get update` only when apt has no candidate for the packages. \
      Also unpacks the ELF vmlinux (for the PVH entry) from the LZ4 bzImage. \
      Does nothing when the cache is already complete.
      """)

  @Option(help: "Cache directory.")
  var cache: String?
  @Flag(help: "Download and unpack again even if the cache is complete.")
  var force = false

  func run() throws {
    let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
    do {
      let g = try LinuxGuestFetcher(cache: dir, log: { print($0) }).fetch(force: force)
      print("kernel version: \(g.kernelVersion)")
      print("bzImage:        \(g.bzImage)")
      print("vmlinux (PVH):  \(g.vmlinux)")
      print("modules:        \(g.modulesDirectory)")
      for m in g.virtioModules() { print("  \(m)") }
      print("busybox:        \(g.busybox)")
    } catch {
      fail("guest fetch-linux: \(error)", status: .fetchFailed)
    }
  }
}

/// Downloads a non-Linux guest Debian packages (memtest86+, Xen) into the cache.
struct FetchPackage: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fetch-package",
    abstract: "Download a packaged guest (memtest, xen) with apt-get and unpack it into the cache.",
    discussion: """
      memtest: memtest86+ (boot/memtest86+x64.bin, a bzImage); xen: xen-hypervisor-4.17-amd64 \
      (boot/xen-4.17-amd64, decompressed from its .gz). They go to <cache>/packaged; the cache \
      is --cache, else $SWIFTVMM_CACHE, else ~/.cache/swiftvmm/linux. Does nothing when the \
      image is already there.
      """)

  @Argument(
    help: "What to fetch: \(PackagedGuest.allCases.map(\.rawValue).joined(separator: ", ")).")
  var name: String
  @Option(help: "Cache directory.")
  var cache: String?
  @Flag(help: "Download and unpack again even if the image is there.")
  var force = false

  func run() throws {
    guard let guest = PackagedGuest(rawValue: name) else {
      fail(
        "guest fetch-package: unknown guest '\(name)'; choose one of \(PackagedGuest.allCases.map(\.rawValue).joined(separator: ", "))",
        status: .usage)
    }
    let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
    do {
      let path = try LinuxGuestFetcher(cache: dir, log: { print($0) }).fetch(guest, force: force)
      print("\(guest.rawValue): \(path)")
    } catch {
      fail("guest fetch-package: \(error)", status: .fetchFailed)
    }
  }
}

struct FetchError: Error, CustomStringConvertible {
  var description: String
}

struct LinuxGuestFetcher {
  static let metapackage = "linux-image-cloud-amd64"
  static let busyboxPackage = "busybox-static"
  var cache: String
  var log: (String) -> Void

  func fetch(force: Bool = false) throws -> LinuxGuestImages {
    if !force, let g = LinuxGuestImages.locate(in: cache) {
      log("cache \(cache) is complete; nothing to do")
      return g
    }
    let fm = FileManager.default
    let debs = cache + "/debs"
    let root = cache + "/root"
    if force || LinuxGuestImages.unpacked(in: cache) == nil {
      try? fm.removeItem(atPath: root)
      try fm.createDirectory(atPath: debs, withIntermediateDirectories: true)
      try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
      let kernelPackage = try resolveKernelPackage()
      log("downloading \(kernelPackage) and \(Self.busyboxPackage) into \(debs)")
      for p in [kernelPackage, Self.busyboxPackage] {
        let have =
          (try? fm.contentsOfDirectory(atPath: debs))?.contains { $0.hasPrefix(p + "_") } ?? false
        if have && !force { continue }
        let r = try run(["apt-get", "download", p], in: debs)
        guard r.status == 0 else {
          throw FetchError(
            description: "apt-get download \(p) failed (status \(r.status)): \(r.errorTail)")
        }
      }
      let files = try fm.contentsOfDirectory(atPath: debs).filter {
        $0.hasSuffix(".deb")
          && ($0.hasPrefix(kernelPackage + "_") || $0.hasPrefix(Self.busyboxPackage + "_"))
      }
      guard files.count >= 2 else {
        throw FetchError(
          description: "apt-get left \(files) in \(debs); expected the kernel and busybox packages")
      }
      for f in files.sorted() {
        log("unpacking \(f)")
        let r = try run(["dpkg", "-x", debs + "/" + f, root], in: cache)
        guard r.status == 0 else {
          throw FetchError(description: "dpkg -x \(f) failed (status \(r.status)): \(r.errorTail)")
        }
      }
    }
    guard let g = LinuxGuestImages.unpacked(in: cache) else {
      throw FetchError(
        description:
          "the unpacked packages in \(root) lack boot/vmlinuz-*, lib/modules/<ver> or bin/busybox")
    }
    if force || !fm.fileExists(atPath: g.vmlinux) {
      log("unpacking the ELF vmlinux from \(g.bzImage)")
      let bz = try [UInt8](Data(contentsOf: URL(fileURLWithPath: g.bzImage)))
      let elf = try BzImageLoader.extractVmlinux(bz)
      try Data(elf).write(to: URL(fileURLWithPath: g.vmlinux + ".tmp"))
      try? fm.removeItem(atPath: g.vmlinux)
      try fm.moveItem(atPath: g.vmlinux + ".tmp", toPath: g.vmlinux)
    }
    return g
  }

  /// Downloads and unpacks a packaged guest; returns its image's path.
  func fetch(_ guest: PackagedGuest, force: Bool = false) throws -> String {
    if !force, let p = guest.locate(in: cache) {
      log("\(p) is there; nothing to do")
      return p
    }
    let fm = FileManager.default
    let debs = cache + "/debs"
    let root = PackagedGuest.root(in: cache)
    try fm.createDirectory(atPath: debs, withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
    func deb() -> String? {
      (try? fm.contentsOfDirectory(atPath: debs))?.filter {
        $0.hasPrefix(guest.package + "_") && $0.hasSuffix(".deb")
      }.sorted().last
    }
    if force || deb() == nil {
      log("downloading \(guest.package) into \(debs)")
      var r = try run(["apt-get", "download", guest.package], in: debs)
      if r.status != 0 {
        log("apt-get download \(guest.package) failed; running apt-get update and retrying")
        let u = try run(["apt-get", "update"], in: nil)
        guard u.status == 0 else {
          throw FetchError(
            description: "apt-get update failed (status \(u.status)): \(u.errorTail)")
        }
        r = try run(["apt-get", "download", guest.package], in: debs)
      }
      guard r.status == 0 else {
        throw FetchError(
          description:
            "apt-get download \(guest.package) failed (status \(r.status)): \(r.errorTail)")
      }
    }
    guard let file = deb() else {
      throw FetchError(description: "apt-get left no \(guest.package)_*.deb in \(debs)")
    }
    log("unpacking \(file)")
    let x = try run(["dpkg", "-x", debs + "/" + file, root], in: cache)
    guard x.status == 0 else {
      throw FetchError(description: "dpkg -x \(file) failed (status \(x.status)): \(x.errorTail)")
    }
    let image = root + "/" + guest.imagePath
    if let gz = guest.compressedPath {
      log("decompressing \(gz)")
      let z = try run(["gzip", "-dkf", root + "/" + gz], in: root)
      guard z.status == 0 else {
        throw FetchError(description: "gzip -d \(gz) failed (status \(z.status)): \(z.errorTail)")
      }
    }
    guard fm.fileExists(atPath: image) else {
      throw FetchError(
        description: "\(file) has no \(guest.imagePath); has the package changed its layout?")
    }
    return image
  }

  /// The real kernel package the metapackage depends on, running `apt-get update` once if needed.
  func resolveKernelPackage() throws -> String {
    for attempt in 0..<2 {
      let r = try run(["apt-cache", "depends", Self.metapackage], in: nil)
      let dep = r.output.split(separator: "\n").compactMap { line -> String? in
        let t = line.trimmingCharacters(in: .whitespaces)
        guard t.hasPrefix("Depends:") else { return nil }
        let name = t.dropFirst("Depends:".count).trimmingCharacters(in: .whitespaces)
        return name.hasPrefix("linux-image-") && name.hasSuffix("-cloud-amd64") ? name : nil
      }.first
      let policy = try run(["apt-cache", "policy", Self.busyboxPackage], in: nil)
      let busyboxOK =
        policy.status == 0 && !policy.output.contains("Candidate: (none)")
        && policy.output.contains("Candidate:")
      if let dep, r.status == 0, busyboxOK { return dep }
      if attempt == 0 {
        log(
          "apt has no candidate for \(Self.metapackage) or \(Self.busyboxPackage); running apt-get update"
        )
        let u = try run(["apt-get", "update"], in: nil)
        guard u.status == 0 else {
          throw FetchError(
            description: "apt-get update failed (status \(u.status)): \(u.errorTail)")
        }
      }
    }
    throw FetchError(
      description:
        "apt cannot resolve \(Self.metapackage) and \(Self.busyboxPackage) even after apt-get update; are Debian's package lists reachable?"
    )
  }

  struct Result {
    var status: Int32
    var output: String
    var error: String
    var errorTail: String {
      let lines = error.split(separator: "\n").suffix(5).joined(separator: "\n")
      return lines.isEmpty ? "(no error output)" : lines
    }
  }

  /// Runs `argv` and captures its output; with `passthrough` the child writes to our
  /// terminal instead (its own progress lines), and only the status is returned.
  func run(_ argv: [String], in dir: String?, passthrough: Bool = false) throws -> Result {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    if let dir { p.currentDirectoryURL = URL(fileURLWithPath: dir) }
    if passthrough {
      do { try p.run() } catch { throw FetchError(description: "cannot run \(argv[0]): \(error)") }
      p.waitUntilExit()
      return Result(status: p.terminationStatus, output: "", error: "")
    }
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do {
      try p.run()
    } catch {
      throw FetchError(description: "cannot run \(argv[0]): \(error)")
    }
    // Read both pipes before waiting, so a chatty child cannot block on a full pipe.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
      errBox.data = err.fileHandleForReading.readDataToEndOfFile()
      group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errBox.data
    p.waitUntilExit()
    if p.terminationReason == .exit && p.terminationStatus == 127 {
      throw FetchError(
        description: "\(argv[0]) is not installed (this needs a Debian/Ubuntu host with apt)")
    }
    return Result(
      status: p.terminationStatus, output: String(decoding: outData, as: UTF8.self),
      error: String(decoding: errData, as: UTF8.self))
  }
}
