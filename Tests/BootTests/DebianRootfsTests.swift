import XCTest

@testable import Boot

final class DebianRootfsTests: XCTestCase {
  /// Every command the root-switching /init runs must be a busybox applet linked in the
  /// standard initramfs, or the boot stops in the initramfs with "not found".
  func testRootInitUsesOnlyLinkedApplets() {
    let script = DebianRootfs.rootInitScript(
      device: "/dev/vdb", moduleList: StandardInitramfs.moduleListPath)
    let keywords: Set<String> = ["if", "then", "else", "do", "while", "exec", "!"]
    var commands: Set<String> = []
    for line in script.split(separator: "\n") where !line.hasPrefix("#") {
      for part in line.split(separator: ";") {
        for seg in part.components(separatedBy: "&&").flatMap({ $0.components(separatedBy: "||") })
        {
          let words = seg.split(separator: " ").map(String.init).drop { keywords.contains($0) }
          guard let first = words.first, !["fi", "done", "for"].contains(first) else { continue }
          if first.contains("=") || first.hasPrefix("$") { continue }
          commands.insert(first)
        }
      }
    }
    let builtins: Set<String> = ["echo", "test", "true", "false"]
    for c in commands where !builtins.contains(c) && !c.hasPrefix("\"") {
      XCTAssertTrue(StandardInitramfs.applets.contains(c), "init runs '\(c)', which is not linked")
    }
    XCTAssertTrue(script.contains("mount -t ext4 -o rw /dev/vdb /newroot"))
    XCTAssertTrue(script.contains("exec switch_root /newroot /sbin/init"))
  }

  func testImageConfigurationMountsRootFromTheFirstDisk() {
    let files = Dictionary(
      uniqueKeysWithValues: DebianRootfs.files().map { ($0.path, $0.contents) })
    XCTAssertEqual(files["etc/fstab"], "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
    XCTAssertNotNil(files["etc/systemd/network/80-dhcp.network"])
    XCTAssertTrue(DebianRootfs.packages.contains("systemd-sysv"))
    XCTAssertTrue(DebianRootfs.packages.contains("openssh-server"))
    XCTAssertEqual(Set(DebianRootfs.files().map(\.path)).count, DebianRootfs.files().count)
  }
}
