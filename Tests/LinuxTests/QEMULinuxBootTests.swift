import Foundation
import Memory
import X86
import XCTest

@testable import Boot

/// Boots the Debian kernel under QEMU TCG with *our* boot structures: the loader writes a
/// GuestMemory exactly as it does for SwiftVMM, every non-zero page goes into a module, and
/// a tiny multiboot stub copies the pages into place and enters with the loader's CPU state.
/// So the kernel sees our boot_params (or hvm_start_info), e820, initrd placement and ACPI
/// tables, on a CPU we know is right. This checks the loaders before our interpreter can.
final class QEMULinuxBootTests: XCTestCase {
  static let stubSource = """
            .section .multiboot, "a"
            .align 4
            .long 0x1BADB002
            .long 0x00000003
            .long -(0x1BADB002 + 0x00000003)
            .text
            .code32
            .globl _start
    _start: cli
            mov $stack_top, %esp
            mov 24(%ebx), %eax
            mov 0(%eax), %ebp
            lea 48(%ebp), %esi
            mov 40(%ebp), %ecx
    1:      test %ecx, %ecx
            jz 3f
            push %ecx
            mov 0(%esi), %edi
            mov 4(%esi), %ecx
            add $8, %esi
            cld
            rep movsb
            add $3, %esi
            and $~3, %esi
            pop %ecx
            dec %ecx
            jmp 1b
    3:      sub $8, %esp
            mov 28(%ebp), %eax
            mov %ax, (%esp)
            mov 24(%ebp), %eax
            mov %eax, 2(%esp)
            lgdt (%esp)
            cmpl $32, 4(%ebp)
            je pvh
            mov %cr4, %eax
            or $0x20, %eax
            mov %eax, %cr4
            mov 20(%ebp), %eax
            mov %eax, %cr3
            mov $0xC0000080, %ecx
            rdmsr
            or $0x100, %eax
            wrmsr
            mov %cr0, %eax
            or $0x80000001, %eax
            mov %eax, %cr0
            pushl 32(%ebp)
            pushl $long64
            lret
    pvh:    pushl 32(%ebp)
            pushl $pvh32
            lret
    pvh32:  mov 36(%ebp), %eax
            mov %eax, %ds
            mov %eax, %es
            mov %eax, %ss
            mov %eax, %fs
            mov %eax, %gs
            mov 16(%ebp), %ebx
            mov 8(%ebp), %eax
            jmp *%eax
            .code64
    long64: mov %ebp, %ebp
            mov 36(%rbp), %eax
            mov %eax, %ds
            mov %eax, %es
            mov %eax, %ss
            mov %eax, %fs
            mov %eax, %gs
            mov 12(%rbp), %esi
            mov 8(%rbp), %eax
            jmp *%rax
            .bss
            .align 16
            .space 8192
    stack_top:
            .space 0x5000000

    """
  static let linkerScript = """
    ENTRY(_start)
    SECTIONS { . = 0x100000; .text : { *(.multiboot) *(.text*) } .bss : { *(.bss*) } }

    """

  var tmp: URL!

  override func setUpWithError() throws {
    tmp = FileManager.default.temporaryDirectory.appendingPathComponent(
      "svqemu-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

  func testBzImageBootsUnderQEMUWithOurBootParamsAndACPI() throws {
    let out = try boot(pvh: false)
    XCTAssertTrue(out.contains("SVMM-MARKER"), out)
    XCTAssertTrue(out.contains("ACPI: RSDP 0x"), out)
    XCTAssertTrue(out.contains("SWVMM"), "our ACPI tables are the ones in use\n\(out)")
  }

  func testPVHBootsUnderQEMUWithOurStartInfo() throws {
    let out = try boot(pvh: true)
    XCTAssertTrue(out.contains("SVMM-MARKER"), out)
    XCTAssertTrue(out.contains("SWVMM"), out)
  }

  func which(_ name: String) -> String? {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin:/opt/swift/usr/bin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first {
      FileManager.default.isExecutableFile(atPath: $0)
    }
  }

  @discardableResult
  func run(_ exe: String, _ args: [String], timeout: Double = 120) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let timer = DispatchWorkItem { p.terminate() }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    timer.cancel()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  func boot(pvh: Bool) throws -> String {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip(
        "Debian guest not in \(LinuxGuestImages.defaultCacheDirectory); run `swiftvmm guest fetch-linux`"
      )
    }
    guard let qemu = which("qemu-system-x86_64") else {
      throw XCTSkip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    }
    guard let clang = which("clang"), let lld = which("ld.lld") else {
      throw XCTSkip("clang/ld.lld not found; cannot build the multiboot stub")
    }
    // The stub.
    let src = tmp.appendingPathComponent("stub.S")
    try Self.stubSource.write(to: src, atomically: true, encoding: .utf8)
    try Self.linkerScript.write(
      to: tmp.appendingPathComponent("link.ld"), atomically: true, encoding: .utf8)
    let obj = tmp.appendingPathComponent("stub.o").path
    let stub = tmp.appendingPathComponent("stub.elf").path
    var r = try run(clang, ["--target=i386-unknown-none-elf", "-c", src.path, "-o", obj])
    XCTAssertEqual(r.0, 0, r.1)
    r = try run(
      lld, ["-m", "elf_i386", "-T", tmp.appendingPathComponent("link.ld").path, "-o", stub, obj])
    XCTAssertEqual(r.0, 0, r.1)

    // Guest memory as our loader leaves it. QEMU's PIIX4 powers off on SLP_TYP 0.
    let mem = try GuestMemory(size: 512 << 20)
    var acpiConfig = ACPIConfig()
    acpiConfig.s5SleepType = 0
    let acpi = try ACPITables.install(acpiConfig, into: mem)
    let initrd = try StandardInitramfs.build(
      guest: g,
      initScript: StandardInitramfs.initScript(
        commands: "echo SVMM-MARKER; cat /proc/cmdline; grep -c processor /proc/cpuinfo"))
    let cmdline = "console=ttyS0 panic=-1 loglevel=7"
    let image: BootImage
    if pvh {
      let vmlinux = try [UInt8](Data(contentsOf: URL(fileURLWithPath: g.vmlinux)))
      image = try PVHLoader.load(
        vmlinux, commandLine: cmdline, initrd: initrd, rsdp: acpi.rsdp, into: mem)
    } else {
      let bz = try [UInt8](Data(contentsOf: URL(fileURLWithPath: g.bzImage)))
      image = try BzImageLoader.load(
        bz, commandLine: cmdline, initrd: initrd, rsdp: acpi.rsdp, into: mem)
    }
    let s = image.initialState
    var header: [UInt32] = [
      0x494D_5653, pvh ? 32 : 64, UInt32(s.general.rip), UInt32(s.general.rsi),
      UInt32(s.general.rbx),
      UInt32(s.special.cr3), UInt32(s.special.gdt.base), UInt32(s.special.gdt.limit),
      UInt32(s.special.cs.selector), UInt32(s.special.ds.selector), 0, 0,
    ]
    // Chunks: every run of non-zero pages.
    var body: [UInt8] = []
    var chunks: UInt32 = 0
    let zero = [UInt8](repeating: 0, count: 4096)
    var page: UInt64 = 0
    let end = MemoryMap.firmwareArea(for: mem)! + MemoryMap.firmwareAreaSize
    while page < end {
      var run: [UInt8] = []
      let start = page
      while page < end {
        let p = try mem.readBytes(GuestPhysicalAddress(page), count: 4096)
        if p == zero { break }
        run += p
        page += 4096
      }
      if run.isEmpty {
        page += 4096
        continue
      }
      // Keep the copy off the real-mode IVT/BDA that the stub's own BIOS still uses.
      var from = 0
      if start == 0 { from = 0x500 }
      body += le(UInt32(start) + UInt32(from)) + le(UInt32(run.count - from)) + run[from...]
      while body.count % 4 != 0 { body.append(0) }
      chunks += 1
    }
    header[10] = chunks
    let module = header.flatMap { le($0) } + body
    let modPath = tmp.appendingPathComponent("image.svmi").path
    try Data(module).write(to: URL(fileURLWithPath: modPath))

    let (status, output) = try run(
      qemu,
      [
        "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-kernel", stub, "-initrd",
        modPath,
      ], timeout: 120)
    print("--- QEMU (\(pvh ? "PVH" : "bzImage"), status \(status)) ---\n\(output)\n--- end ---")
    return output
  }

  func le(_ v: UInt32) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) }
  }
}
