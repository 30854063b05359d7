import ArgumentParser
import Boot
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// `swiftvmm guest fetch-rootfs`: builds an ext4 image of Debian 12 with systemd from
/// Debian's packages (debootstrap), configured for SwiftVMM (serial getty, DHCP, ssh).
/// debootstrap chroots and mknods, so this needs root; nothing else does.
struct FetchRootfs: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fetch-rootfs",
    abstract: "Build a Debian 12 (systemd) ext4 root file system image with debootstrap.",
    discussion: """
      Needs root (debootstrap chroots) and the debootstrap and e2fsprogs packages. \
      The image goes to <cache>/\(DebianRootfs.imageName) unless --output is given; an \
      existing image is kept unless --force. The kernel modules of the fetched Debian \
      kernel are copied in, so run `swiftvmm guest fetch-linux` first (done automatically). \
      Packages: debootstrap minbase plus \(DebianRootfs.packages.joined(separator: ", ")).
      """)

  @Option(help: "Guest cache directory (default: $SWIFTVMM_CACHE or ~/.cache/swiftvmm/linux).")
  var cache: String?
  @Option(help: "Where to write the image (default: <cache>/\(DebianRootfs.imageName)).")
  var output: String?
  @Option(help: "Image size in MiB.")
  var sizeMiB: Int = DebianRootfs.defaultSizeMiB
  @Option(
    help: "Debian mirror (default: the first deb.debian.org-style URI in the host's apt sources).")
  var mirror: String?
  @Flag(help: "Build again even if the image exists.")
  var force = false

  func validate() throws {
    guard (512...65536).contains(sizeMiB) else {
      throw ValidationError("--size-mib must be between 512 and 65536 (got \(sizeMiB))")
    }
  }

  func run() throws {
    let dir = cache ?? LinuxGuestImages.defaultCacheDirectory
    let image = output ?? dir + "/" + DebianRootfs.imageName
    let fm = FileManager.default
    if !force && fm.fileExists(atPath: image) {
      print("\(image) exists; nothing to do (--force rebuilds it)")
      return
    }
    guard geteuid() == 0 else {
      fail(
        "guest fetch-rootfs needs root: debootstrap chroots into the new system (run it with sudo)",
        status: .needsRoot)
    }
    for (tool, package) in [("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs")]
    where !Self.onPath(tool) {
      fail("guest fetch-rootfs needs \(tool): apt-get install \(package)", status: .fetchFailed)
    }
    let log: (String) -> Void = { print($0) }
    let runner = LinuxGuestFetcher(cache: dir, log: log)
    let guest: LinuxGuestImages
    do {
      guest = try runner.fetch()
    } catch {
      fail("guest fetch-rootfs: cannot fetch the Debian kernel: \(error)", status: .fetchFailed)
    }
    let staging = image + ".staging"
    let start = Date()
    func step(_ s: String) {
      print(String(format: "[%5.0fs] ", Date().timeIntervalSince(start)) + s)
    }
    do {
      try? fm.createDirectory(
        atPath: (image as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
      try removeStaging(staging, runner: runner)
      try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
      let source = mirror ?? Self.hostMirror() ?? "http://deb.debian.org/debian"
      step(
        "debootstrap \(DebianRootfs.suite) from \(source) (minbase + \(DebianRootfs.packages.count) packages; several minutes)"
      )
      try check(
        runner.run(
          [
            "debootstrap", "--variant=minbase",
            "--include=" + DebianRootfs.packages.joined(separator: ","), DebianRootfs.suite,
            staging,
            source,
          ], in: nil, passthrough: true), "debootstrap")
      step("configuring: hostname, fstab, networkd DHCP, serial autologin, ssh")
      for f in DebianRootfs.files() {
        let path = staging + "/" + f.path
        try fm.createDirectory(
          atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(f.contents.utf8).write(to: URL(fileURLWithPath: path))
        try fm.setAttributes([.posixPermissions: f.mode], ofItemAtPath: path)
      }
      try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: staging + "/root/.ssh")
      for c in DebianRootfs.chrootCommands {
        try check(runner.run(["chroot", staging] + c, in: nil), c.joined(separator: " "))
      }
      step("copying the kernel modules of \(guest.kernelVersion)")
      let modulesTarget = staging + "/lib/modules"
      try fm.createDirectory(atPath: modulesTarget, withIntermediateDirectories: true)
      try check(
        runner.run(["cp", "-a", guest.modulesDirectory, modulesTarget + "/"], in: nil), "cp modules"
      )
      try check(
        runner.run(["chroot", staging, "depmod", guest.kernelVersion], in: nil), "depmod")
      try? fm.removeItem(atPath: staging + "/var/cache/apt/archives")
      try? fm.createDirectory(
        atPath: staging + "/var/cache/apt/archives/partial", withIntermediateDirectories: true)
      step("making the ext4 image (\(sizeMiB) MiB)")
      let tmp = image + ".tmp"
      try? fm.removeItem(atPath: tmp)
      try check(
        runner.run(
          ["mkfs.ext4", "-q", "-F", "-L", "debian", "-d", staging, tmp, "\(sizeMiB)M"], in: nil),
        "mkfs.ext4")
      try? fm.removeItem(atPath: image)
      try fm.moveItem(atPath: tmp, toPath: image)
      try removeStaging(staging, runner: runner)
      step("done: \(image)")
      print("boot it with: swiftvmm linux --disk \(image) --root")
    } catch {
      try? removeStaging(staging, runner: runner)
      fail("guest fetch-rootfs: \(error)", status: .fetchFailed)
    }
  }

  /// debootstrap leaves proc/sys mounted under the target when it fails; unmount them
  /// before deleting, so removal never walks into the host's /proc.
  private func removeStaging(_ staging: String, runner: LinuxGuestFetcher) throws {
    guard FileManager.default.fileExists(atPath: staging) else { return }
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    let under = mounts.split(separator: "\n").compactMap { line -> String? in
      let f = line.split(separator: " ")
      return f.count > 1 && f[1].hasPrefix(staging + "/") ? String(f[1]) : nil
    }
    for m in under.sorted(by: >) { _ = try runner.run(["umount", "-l", m], in: nil) }
    try FileManager.default.removeItem(atPath: staging)
  }

  private func check(_ r: LinuxGuestFetcher.Result, _ what: String) throws {
    guard r.status == 0 else {
      throw FetchError(description: "\(what) failed (status \(r.status)): \(r.errorTail)")
    }
  }

  static func onPath(_ tool: String) -> Bool {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
    return (path.split(separator: ":") + ["/usr/sbin", "/sbin"]).contains {
      FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
    }
  }

  /// The Debian mirror the host's apt uses (deb822 `URIs:` or one-line `deb URI suite`).
  static func hostMirror() -> String? {
    let dir = "/etc/apt/sources.list.d"
    let files =
      ["/etc/apt/sources.list"]
      + ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
      .filter { $0.hasSuffix(".sources") || $0.hasSuffix(".list") }.map { dir + "/" + $0 }
    for f in files {
      guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { continue }
      for line in text.split(separator: "\n") {
        let t = line.trimmingCharacters(in: .whitespaces)
        var uri: Substring?
        if t.hasPrefix("URIs:") {
          uri = t.dropFirst(5).split(separator: " ").first
        } else if t.hasPrefix("deb ") {
          uri = t.split(separator: " ").dropFirst().first { !$0.hasPrefix("[") }
        }
        if let u = uri, u.hasSuffix("/debian") || u.hasSuffix("/debian/") { return String(u) }
      }
    }
    return nil
  }
}
