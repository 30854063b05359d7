#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The Debian reference guest as `swiftvmm guest fetch-linux` leaves it in the cache:
///
///     <cache>/debs/*.deb                         what apt-get download fetched
///     <cache>/root/boot/vmlinuz-<ver>            the bzImage
///     <cache>/root/lib/modules/<ver>/kernel/...  modules (uncompressed .ko in Debian 12)
///     <cache>/root/bin/busybox                   busybox-static
///     <cache>/vmlinux-<ver>                      ELF vmlinux unpacked from the bzImage, for PVH
///
/// The cache is `$SWIFTVMM_CACHE` if set, else `~/.cache/swiftvmm/linux`.
public struct LinuxGuestImages: Equatable {
  public var cacheDirectory: String
  public var kernelVersion: String
  public var bzImage: String
  public var vmlinux: String
  public var modulesDirectory: String
  public var busybox: String

  public static var defaultCacheDirectory: String {
    if let c = getenv("SWIFTVMM_CACHE"), !String(cString: c).isEmpty { return String(cString: c) }
    let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
    return home + "/.cache/swiftvmm/linux"
  }

  /// The unpacked guest in `cache`, or nil when any piece is missing (vmlinux included).
  public static func locate(in cache: String = defaultCacheDirectory) -> LinuxGuestImages? {
    guard let k = unpacked(in: cache) else { return nil }
    return exists(k.vmlinux) ? k : nil
  }

  /// Like `locate`, but the vmlinux need not have been extracted yet.
  public static func unpacked(in cache: String) -> LinuxGuestImages? {
    let root = cache + "/root"
    guard let names = list(root + "/boot"),
      let kernelName = names.filter({ $0.hasPrefix("vmlinuz-") }).sorted().last
    else { return nil }
    let version = String(kernelName.dropFirst("vmlinuz-".count))
    let g = LinuxGuestImages(
      cacheDirectory: cache, kernelVersion: version, bzImage: root + "/boot/" + kernelName,
      vmlinux: cache + "/vmlinux-" + version, modulesDirectory: root + "/lib/modules/" + version,
      busybox: root + "/bin/busybox")
    guard exists(g.bzImage), exists(g.busybox), exists(g.modulesDirectory) else { return nil }
    return g
  }

  /// What `unpacked(in:)` did not find, for error messages.
  public static func missingPieces(in cache: String) -> [String] {
    let root = cache + "/root"
    let kernels = (list(root + "/boot") ?? []).filter { $0.hasPrefix("vmlinuz-") }
    var out: [String] = []
    if kernels.isEmpty { out.append("\(root)/boot/vmlinuz-*") }
    if !exists(root + "/bin/busybox") { out.append("busybox (\(root)/bin/busybox)") }
    if let k = kernels.last, !exists(root + "/lib/modules/" + k.dropFirst("vmlinuz-".count)) {
      out.append("\(root)/lib/modules/\(k.dropFirst("vmlinuz-".count))")
    }
    return out
  }

  /// Paths of the virtio driver modules present plus every module they depend on, in
  /// load order: dependencies come from each module's `depends=` modinfo string, since
  /// Debian ships no modules.dep before depmod runs.
  public func virtioModules() -> [String] {
    var byName: [String: String] = [:]
    func scan(_ dir: String) {
      for n in LinuxGuestImages.list(dir) ?? [] {
        let p = dir + "/" + n
        if LinuxGuestImages.isDirectory(p) {
          scan(p)
        } else {
          let name = StandardInitramfs.moduleName(n)
          if !name.isEmpty { byName[name.replacingDashes] = p }
        }
      }
    }
    scan(modulesDirectory + "/kernel")
    var order: [String] = []
    var state: [String: Bool] = [:]  // false: in progress, true: done
    func visit(_ name: String) {
      let key = name.replacingDashes
      guard state[key] == nil, let path = byName[key] else { return }
      state[key] = false
      let bytes = (try? CPIO.readFile(path)) ?? []
      for d in StandardInitramfs.dependencies(ofModule: bytes) where state[d.replacingDashes] == nil
      {
        visit(d)
      }
      state[key] = true
      order.append(path)
    }
    for m in StandardInitramfs.virtioModuleNames { visit(m) }
    return order
  }

  static func exists(_ p: String) -> Bool {
    var st = stat()
    return stat(p, &st) == 0
  }

  static func isDirectory(_ p: String) -> Bool {
    var st = stat()
    return lstat(p, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
  }

  static func list(_ dir: String) -> [String]? {
    guard let d = opendir(dir) else { return nil }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
      let n = withUnsafeBytes(of: e.pointee.d_name) {
        String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
      }
      if n != "." && n != ".." { names.append(n) }
    }
    return names.sorted()
  }
}

/// The initramfs our Linux tests boot: busybox, its applet links, an /init script,
/// /dev/console, and the virtio modules (kept as Debian ships them, under /lib/modules).
public enum StandardInitramfs {
  /// Applets linked in /bin (busybox resolves the rest via `busybox <applet>`).
  public static let applets = [
    "sh", "ash", "cat", "echo", "ls", "mkdir", "mount", "umount", "mknod", "ln", "rm", "cp", "mv",
    "insmod", "rmmod", "lsmod", "modprobe", "poweroff", "reboot", "halt", "sleep", "dmesg", "uname",
    "grep", "sed", "head", "tail", "wc", "ps", "free", "true", "false", "sync", "date", "hostname",
    "ifconfig", "ip", "dd", "hexdump", "md5sum", "sha256sum", "stty", "test", "[", "env", "setsid",
    "cttyhack", "sysctl", "seq", "tr", "cut", "sort", "uptime", "nproc", "printf", "cmp", "find",
    "xargs", "vi", "less", "top", "kill", "chmod", "chown", "touch", "stat", "df", "du",
    "switch_root", "wget", "nc", "mke2fs", "cksum",
    "blockdev",
  ]

  /// The virtio drivers the later issues need; `LinuxGuestImages.virtioModules()` adds
  /// their dependencies (virtio_ring, virtio_pci_*_dev, failover, net_failover).
  public static let virtioModuleNames = [
    "virtio", "virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio-rng",
  ]

  /// The `depends=` list from a module's .modinfo strings.
  public static func dependencies(ofModule ko: [UInt8]) -> [String] {
    let key = Array("depends=".utf8)
    var i = 0
    while i + key.count <= ko.count {
      if ko[i] == key[0], (i == 0 || ko[i - 1] == 0), Array(ko[i..<(i + key.count)]) == key {
        var j = i + key.count
        while j < ko.count && ko[j] != 0 { j += 1 }
        let list = String(decoding: ko[(i + key.count)..<j], as: UTF8.self)
        return list.split(separator: ",").map(String.init)
      }
      i += 1
    }
    return []
  }

  /// "virtio_net.ko.xz" -> "virtio_net".
  static func moduleName(_ file: String) -> String {
    for ext in [".ko.xz", ".ko.zst", ".ko.gz", ".ko"] where file.hasSuffix(ext) {
      return String(file.dropLast(ext.count))
    }
    return ""
  }

  /// The file listing the bundled modules' guest paths in load order, one per line, so
  /// an init script can run `for m in $(cat /etc/virtio-modules); do insmod $m; done`.
  public static let moduleListPath = "etc/virtio-modules"

  /// Builds the entries. `modules` are host paths of .ko files inside `modulesRoot`
  /// (`lib/modules/<ver>`); their path below it is kept. Throws if busybox is missing.
  public static func entries(
    busybox: String, initScript: String, modules: [String] = [], modulesRoot: String? = nil,
    kernelVersion: String? = nil, extraFiles: [CPIOEntry] = []
  ) throws -> [CPIOEntry] {
    guard LinuxGuestImages.exists(busybox) else {
      throw InitramfsError.missing(
        "busybox (\(busybox) does not exist; run `swiftvmm guest fetch-linux` or pass the busybox-static binary)"
      )
    }
    let bb = try CPIO.readFile(busybox)
    guard bb.count > 4, bb[0] == 0x7F, bb[1] == 0x45 else {
      throw InitramfsError.invalid("\(busybox) is not an ELF executable")
    }
    var e: [CPIOEntry] = [
      CPIOEntry("bin", .directory), CPIOEntry("sbin", .directory), CPIOEntry("dev", .directory),
      CPIOEntry("proc", .directory), CPIOEntry("sys", .directory),
      CPIOEntry("tmp", .directory, permissions: 0o1777),
      CPIOEntry("etc", .directory), CPIOEntry("root", .directory, permissions: 0o700),
      CPIOEntry("dev/console", .characterDevice(major: 5, minor: 1), permissions: 0o600),
      CPIOEntry("dev/null", .characterDevice(major: 1, minor: 3), permissions: 0o666),
      CPIOEntry("dev/ttyS0", .characterDevice(major: 4, minor: 64), permissions: 0o660),
      CPIOEntry("bin/busybox", .file(bb), permissions: 0o755),
    ]
    for a in applets { e.append(CPIOEntry("bin/" + a, .symlink("busybox"))) }
    e.append(CPIOEntry("init", .file(Array(initScript.utf8)), permissions: 0o755))
    if !modules.isEmpty {
      guard let root = modulesRoot else {
        throw InitramfsError.invalid("modules given without the lib/modules/<version> directory")
      }
      let version = kernelVersion ?? String(root.split(separator: "/").last ?? "")
      var guestPaths: [String] = []
      for m in modules {
        guard m.hasPrefix(root + "/") else {
          throw InitramfsError.invalid("module \(m) is not under \(root)")
        }
        let rel = "lib/modules/\(version)/" + m.dropFirst(root.count + 1)
        e.append(CPIOEntry(rel, .file(try CPIO.readFile(m)), permissions: 0o644))
        guestPaths.append("/" + rel)
      }
      e.append(
        CPIOEntry(moduleListPath, .file(Array(guestPaths.joined(separator: "\n").utf8) + [10])))
    }
    e += extraFiles
    try CPIO.checkSymlinks(e)
    return e
  }

  /// The standard initramfs for a fetched Debian guest, as a (gzip-compressed) cpio archive.
  public static func build(
    guest: LinuxGuestImages, initScript: String, gzip: Bool = true, extraFiles: [CPIOEntry] = []
  ) throws -> [UInt8] {
    let cpio = CPIO.archive(
      try entries(
        busybox: guest.busybox, initScript: initScript, modules: guest.virtioModules(),
        modulesRoot: guest.modulesDirectory, kernelVersion: guest.kernelVersion,
        extraFiles: extraFiles))
    return gzip ? Gzip.compress(cpio) : cpio
  }

  /// An init that mounts the usual filesystems, loads the virtio modules, runs `commands`
  /// and powers off.
  public static func initScript(commands: String) -> String {
    """
    #!/bin/sh
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev 2>/dev/null
    if [ -f /\(moduleListPath) ]; then
      for m in $(cat /\(moduleListPath)); do insmod $m 2>/dev/null; done
    fi
    # console=hvc0 (virtio-console) appears only once its module is loaded.
    if grep -q 'console=hvc0' /proc/cmdline && [ -c /dev/hvc0 ]; then
      exec </dev/hvc0 >/dev/hvc0 2>&1
    fi
    \(commands)
    poweroff -f

    """
  }
}

extension String {
  /// Module names treat '-' and '_' alike (virtio-rng is loaded as virtio_rng).
  fileprivate var replacingDashes: String { String(map { $0 == "-" ? "_" : $0 }) }
}
