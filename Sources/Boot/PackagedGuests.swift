/// Guests other than Linux that Debian packages and QEMU boots with `-kernel`, fetched
/// by `swiftvmm guest fetch-package NAME` into the Linux guest's cache (the .deb in
/// `<cache>/debs`, unpacked into `<cache>/packaged`, which `fetch-linux --force` leaves
/// alone), so the tests can boot what users boot.
public enum PackagedGuest: String, CaseIterable {
  /// memtest86+ 6.x, a bzImage with the 64-bit entry (Linux boot protocol 2.12).
  case memtest
  /// The Xen hypervisor, a multiboot kernel shipped gzip-compressed.
  case xen

  /// The Debian (bookworm) package that holds it.
  public var package: String {
    switch self {
    case .memtest: return "memtest86+"
    case .xen: return "xen-hypervisor-4.17-amd64"
    }
  }

  /// Where packages are unpacked.
  public static func root(in cache: String) -> String { cache + "/packaged" }

  /// Path of the bootable image below `root(in:)`.
  public var imagePath: String {
    switch self {
    case .memtest: return "boot/memtest86+x64.bin"
    // `fetch-package xen` decompresses xen-4.17-amd64.gz next to it (QEMU's multiboot
    // loader and ours take the ELF, as GRUB does after decompressing).
    case .xen: return "boot/xen-4.17-amd64"
    }
  }

  /// The gzip file `imagePath` is decompressed from, if any.
  public var compressedPath: String? {
    switch self {
    case .memtest: return nil
    case .xen: return "boot/xen-4.17-amd64.gz"
    }
  }

  /// The image in `cache`, or nil when it has not been fetched.
  public func locate(in cache: String = LinuxGuestImages.defaultCacheDirectory) -> String? {
    let p = PackagedGuest.root(in: cache) + "/" + imagePath
    return LinuxGuestImages.exists(p) ? p : nil
  }
}
