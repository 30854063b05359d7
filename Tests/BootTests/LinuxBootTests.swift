import Foundation
import Memory
import X86
import XCTest

@testable import Boot

final class LinuxBootTests: XCTestCase {
  func testPicksTheProtocolFromTheImage() throws {
    let mem = try GuestMemory(size: 64 << 20)
    let bz = makeBzImage()
    XCTAssertTrue(LinuxBoot.isLinuxKernel(bz))
    let (img, acpi) = try LinuxBoot.load(bz, commandLine: "console=ttyS0", into: mem)
    XCTAssertEqual(img.format, .linuxBzImage)
    XCTAssertEqual(acpi.rsdp, MemoryMap.firmwareArea(for: mem))
    let rsdp: UInt64 = try mem.read(GuestPhysicalAddress(LinuxBootLayout.zeroPage + 0x70))
    XCTAssertEqual(rsdp, acpi.rsdp)

    let elf = makePVHElf(notes: [("Xen", 18, [0, 0, 0, 1])])
    XCTAssertTrue(LinuxBoot.isLinuxKernel(elf))
    let mem2 = try GuestMemory(size: 64 << 20)
    let (img2, acpi2) = try LinuxBoot.load(
      elf, commandLine: "", acpi: ACPIConfig(cpuCount: 2), into: mem2)
    XCTAssertEqual(img2.format, .linuxPVH)
    let sirsdp: UInt64 = try mem2.read(GuestPhysicalAddress(LinuxBootLayout.zeroPage + 0x20))
    XCTAssertEqual(sirsdp, acpi2.rsdp)
    XCTAssertFalse(LinuxBoot.isLinuxKernel(makePVHElf(notes: [])))
  }

  func testRefusesMismatchedProtocol() throws {
    let mem = try GuestMemory(size: 64 << 20)
    XCTAssertThrowsError(
      try LinuxBoot.load(
        makePVHElf(notes: [("Xen", 18, [0, 0, 0, 1])]), commandLine: "", protocol: .bzImage,
        into: mem)
    ) { e in XCTAssertTrue("\(e)".contains("PVH"), "\(e)") }
    // A bzImage without an LZ4 payload cannot be booted through PVH.
    XCTAssertThrowsError(
      try LinuxBoot.load(makeBzImage(), commandLine: "", protocol: .pvh, into: mem))
  }

  func testRealKernelThroughBothProtocols() throws {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip(
        "Debian guest not in \(LinuxGuestImages.defaultCacheDirectory); run `swiftvmm guest fetch-linux`"
      )
    }
    // PVH from the cached vmlinux: unpacking the bzImage is covered by BzImageLoaderTests.
    for proto in LinuxBootProtocol.allCases {
      let path = proto == .pvh ? g.vmlinux : g.bzImage
      let kernel = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
      let mem = try GuestMemory(size: 256 << 20)
      let (img, _) = try LinuxBoot.load(
        kernel, commandLine: "console=ttyS0", initrd: [1, 2, 3], protocol: proto, into: mem)
      XCTAssertEqual(img.format, proto == .pvh ? .linuxPVH : .linuxBzImage)
    }
  }
}
