import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// Hand-assembled instruction sequences run in long mode (identity-mapped, CPL 0) unless noted.
/// Every sequence ends in HLT, so `run()` returns `.halt` with the state to inspect.
final class UnitTests: XCTestCase {
  static let codeBase: UInt64 = 0x10000
  static let idtBase: UInt64 = 0x50000
  static let handlerBase: UInt64 = 0x20000

  /// 64-bit IDT whose vector v handler is `mov rax, v ; hlt`.
  func installIDT(_ m: TestMachine) throws {
    try m.installHaltingIDT(idtBase: UnitTests.idtBase, handlerBase: UnitTests.handlerBase)
  }

  func machine64(_ code: [UInt8], options: InterpreterOptions = .init(), idt: Bool = true) throws
    -> TestMachine
  {
    let m = try TestMachine(ramMiB: 64, options: options)
    try m.load(code, at: UnitTests.codeBase)
    try m.setLongMode(rip: UnitTests.codeBase)
    if idt { try installIDT(m) }
    return m
  }

  func regs(_ m: TestMachine) throws -> GeneralRegisters { try m.cpu.getState().general }

  func read64(_ m: TestMachine, _ a: UInt64) throws -> UInt64 {
    try m.memory.read(GuestPhysicalAddress(a), as: UInt64.self)
  }

  /// Runs and expects HLT.
  @discardableResult
  func runToHalt(_ m: TestMachine, file: StaticString = #filePath, line: UInt = #line) throws
    -> GeneralRegisters
  {
    let e = try m.cpu.run()
    XCTAssertEqual(e, .halt, file: file, line: line)
    return try regs(m)
  }

  /// Runs, expects the IDT handler for `vector` to halt; returns (error code or RIP slot, frame).
  func expectException(
    _ m: TestMachine, _ vector: UInt64, hasCode: Bool, file: StaticString = #filePath,
    line: UInt = #line
  )
    throws -> (code: UInt64?, rip: UInt64)
  {
    let g = try runToHalt(m, file: file, line: line)
    XCTAssertEqual(g.rax, vector, "vector", file: file, line: line)
    if hasCode {
      return (try read64(m, g.rsp), try read64(m, g.rsp + 8))
    }
    return (nil, try read64(m, g.rsp))
  }

  let cf: UInt64 = 1
  let pf: UInt64 = 4
  let af: UInt64 = 0x10
  let zf: UInt64 = 0x40
  let sf: UInt64 = 0x80
  let of: UInt64 = 0x800
  let status: UInt64 = 0x8D5

  // MARK: ALU and flags

  func testAddFlagsOverflow8() throws {
    // mov al, 0x7f ; add al, 1 ; hlt
    let m = try machine64([0xB0, 0x7F, 0x04, 0x01, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax & 0xFF, 0x80)
    XCTAssertEqual(g.rflags & status, of | sf | af)
  }

  func testSubBorrowAndZero() throws {
    // xor eax,eax ; sub eax,1 → 0xffffffff, CF SF AF PF ; hlt
    let m = try machine64([0x31, 0xC0, 0x83, 0xE8, 0x01, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 0xFFFF_FFFF)
    XCTAssertEqual(g.rflags & status, cf | sf | af | pf)
    // mov rax, 5 ; cmp rax, 5 ; hlt → ZF PF only
    let m2 = try machine64([0x48, 0xC7, 0xC0, 5, 0, 0, 0, 0x48, 0x83, 0xF8, 0x05, 0xF4])
    XCTAssertEqual(try runToHalt(m2).rflags & status, zf | pf)
  }

  func testAdcSbbChain() throws {
    // stc ; mov eax,0xffffffff ; adc eax,0 → 0, CF ZF ; mov ebx,0 ; sbb ebx,0 → -1 with CF
    let m = try machine64([
      0xF9, 0xB8, 0xFF, 0xFF, 0xFF, 0xFF, 0x83, 0xD0, 0x00, 0xBB, 0, 0, 0, 0, 0x83, 0xDB, 0x00,
      0xF4,
    ])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 0)
    XCTAssertEqual(g.rbx, 0xFFFF_FFFF)
    XCTAssertEqual(g.rflags & cf, cf)
  }

  func testIncPreservesCarryAndNeg() throws {
    // stc ; mov cl, 0xff ; inc cl → 0, CF kept, ZF ; hlt
    let m = try machine64([0xF9, 0xB1, 0xFF, 0xFE, 0xC1, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rcx & 0xFF, 0)
    XCTAssertEqual(g.rflags & (cf | zf | of), cf | zf)
    // xor edx,edx ; neg edx → CF=0 ZF=1 ; mov dl,0x80 ; neg dl → 0x80 OF CF
    let m2 = try machine64([0x31, 0xD2, 0xF7, 0xDA, 0xF4])
    XCTAssertEqual(try runToHalt(m2).rflags & (cf | zf), zf)
    let m3 = try machine64([0xB2, 0x80, 0xF6, 0xDA, 0xF4])
    let g3 = try runToHalt(m3)
    XCTAssertEqual(g3.rdx & 0xFF, 0x80)
    XCTAssertEqual(g3.rflags & (cf | of), cf | of)
  }

  func testSignedConditions() throws {
    // mov eax,-1 ; cmp eax,1 ; setl bl ; setb cl ; setg dl ; hlt
    let m = try machine64([
      0xB8, 0xFF, 0xFF, 0xFF, 0xFF, 0x83, 0xF8, 0x01, 0x0F, 0x9C, 0xC3, 0x0F, 0x92, 0xC1, 0x0F,
      0x9F,
      0xC2, 0xF4,
    ])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rbx & 0xFF, 1)  // -1 < 1 signed
    XCTAssertEqual(g.rcx & 0xFF, 0)  // 0xffffffff not below 1
    XCTAssertEqual(g.rdx & 0xFF, 0)
  }

  func testThirtyTwoBitWriteZeroExtends() throws {
    // mov rax, -1 ; mov eax, 1 ; mov rbx,-1 ; mov bx, 2 ; hlt
    let m = try machine64([
      0x48, 0xC7, 0xC0, 0xFF, 0xFF, 0xFF, 0xFF, 0xB8, 1, 0, 0, 0, 0x48, 0xC7, 0xC3, 0xFF, 0xFF,
      0xFF,
      0xFF, 0x66, 0xBB, 2, 0, 0xF4,
    ])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 1)
    XCTAssertEqual(g.rbx, 0xFFFF_FFFF_FFFF_0002)
  }

  // MARK: Shifts and rotates

  func testShiftCountZeroKeepsFlags() throws {
    // stc ; mov eax,1 ; xor ecx,ecx (clears CF!) -> use: mov cl,0 ; stc ; shl eax,cl ; hlt
    let m = try machine64([0xB8, 1, 0, 0, 0, 0xB1, 0x00, 0xF9, 0xD3, 0xE0, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 1)
    XCTAssertEqual(g.rflags & cf, cf)
  }

  func testShiftFlagsAndMasking() throws {
    // mov eax,0x80000001 ; shl eax,1 → 2, CF=1, OF=1 (msb^cf = 0^1)
    let m = try machine64([0xB8, 1, 0, 0, 0x80, 0xD1, 0xE0, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 2)
    XCTAssertEqual(g.rflags & (cf | of | zf), cf | of)
    // mov eax,1 ; mov cl,33 ; shl eax,cl → count masked to 1 → 2
    let m2 = try machine64([0xB8, 1, 0, 0, 0, 0xB1, 33, 0xD3, 0xE0, 0xF4])
    XCTAssertEqual(try runToHalt(m2).rax, 2)
    // mov al,0x81 ; sar al,7 → 0xff, CF=0 ; hlt
    let m3 = try machine64([0xB0, 0x81, 0xC0, 0xF8, 0x07, 0xF4])
    let g3 = try runToHalt(m3)
    XCTAssertEqual(g3.rax & 0xFF, 0xFF)
    XCTAssertEqual(g3.rflags & cf, 0)
  }

  func testRotates() throws {
    // mov al,0x81 ; rol al,1 → 0x03 CF=1 ; hlt
    let m = try machine64([0xB0, 0x81, 0xD0, 0xC0, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax & 0xFF, 0x03)
    XCTAssertEqual(g.rflags & cf, cf)
    // clc ; mov al,0x80 ; rcl al,1 → 0, CF=1 ; rcl al,1 → 1, CF=0
    let m2 = try machine64([0xF8, 0xB0, 0x80, 0xD0, 0xD0, 0xD0, 0xD0, 0xF4])
    let g2 = try runToHalt(m2)
    XCTAssertEqual(g2.rax & 0xFF, 1)
    XCTAssertEqual(g2.rflags & cf, 0)
    // rcl al, 9 (8-bit: count mod 9 = 0 → unchanged): stc ; mov al,0x55 ; rcl al,9
    let m3 = try machine64([0xF9, 0xB0, 0x55, 0xC0, 0xD0, 0x09, 0xF4])
    let g3 = try runToHalt(m3)
    XCTAssertEqual(g3.rax & 0xFF, 0x55)
    XCTAssertEqual(g3.rflags & cf, cf)
  }

  func testShld() throws {
    // mov eax,0x12345678 ; mov ebx,0x9abcdef0 ; shld eax,ebx,8 → 0x3456789a
    let m = try machine64([
      0xB8, 0x78, 0x56, 0x34, 0x12, 0xBB, 0xF0, 0xDE, 0xBC, 0x9A, 0x0F, 0xA4, 0xD8, 0x08, 0xF4,
    ])
    XCTAssertEqual(try runToHalt(m).rax, 0x3456_789A)
  }

  // MARK: Multiply and divide

  func testMul64AndImulOverflow() throws {
    // mov rax,-1 ; mov rbx,2 ; mul rbx → rdx=1, rax=-2, CF=OF=1
    let m = try machine64([
      0x48, 0xC7, 0xC0, 0xFF, 0xFF, 0xFF, 0xFF, 0x48, 0xC7, 0xC3, 2, 0, 0, 0, 0x48, 0xF7, 0xE3,
      0xF4,
    ])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 0xFFFF_FFFF_FFFF_FFFE)
    XCTAssertEqual(g.rdx, 1)
    XCTAssertEqual(g.rflags & (cf | of), cf | of)
    // imul ecx, eax(=0x40000000), 4 → overflow ; mov eax,0x40000000 ; imul ecx,eax,4
    let m2 = try machine64([0xB8, 0, 0, 0, 0x40, 0x6B, 0xC8, 0x04, 0xF4])
    let g2 = try runToHalt(m2)
    XCTAssertEqual(g2.rcx, 0)
    XCTAssertEqual(g2.rflags & (cf | of), cf | of)
    // mov rax,-3 ; mov rbx,-5 ; imul rbx → rdx:rax = 15, no overflow
    let m3 = try machine64([
      0x48, 0xC7, 0xC0, 0xFD, 0xFF, 0xFF, 0xFF, 0x48, 0xC7, 0xC3, 0xFB, 0xFF, 0xFF, 0xFF, 0x48,
      0xF7,
      0xEB, 0xF4,
    ])
    let g3 = try runToHalt(m3)
    XCTAssertEqual(g3.rax, 15)
    XCTAssertEqual(g3.rdx, 0)
    XCTAssertEqual(g3.rflags & (cf | of), 0)
  }

  func testDivAndIdiv() throws {
    // mov edx,1 ; mov eax,0 ; mov ecx,3 ; div ecx → 0x100000000/3
    let m = try machine64([0xBA, 1, 0, 0, 0, 0xB8, 0, 0, 0, 0, 0xB9, 3, 0, 0, 0, 0xF7, 0xF1, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 0x5555_5555)
    XCTAssertEqual(g.rdx, 1)
    // mov rax,-7 ; cqo ; mov rcx,2 ; idiv rcx → -3 rem -1
    let m2 = try machine64([
      0x48, 0xC7, 0xC0, 0xF9, 0xFF, 0xFF, 0xFF, 0x48, 0x99, 0x48, 0xC7, 0xC1, 2, 0, 0, 0, 0x48,
      0xF7,
      0xF9, 0xF4,
    ])
    let g2 = try runToHalt(m2)
    XCTAssertEqual(g2.rax, UInt64(bitPattern: -3))
    XCTAssertEqual(g2.rdx, UInt64(bitPattern: -1))
  }

  func testDivideErrors() throws {
    // xor ecx,ecx ; div ecx → #DE (fault: RIP = the DIV)
    let m = try machine64([0x31, 0xC9, 0xF7, 0xF1, 0xF4])
    let r = try expectException(m, 0, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 2)
    // Quotient overflow: mov edx,1 ; mov ecx,1 ; div ecx (0x1_0000_0000 / 1) → #DE
    let m2 = try machine64([0xBA, 1, 0, 0, 0, 0xB9, 1, 0, 0, 0, 0xF7, 0xF1, 0xF4])
    _ = try expectException(m2, 0, hasCode: false)
    // idiv: mov al,0x80 (AX=0xff80=-128)... use 16-bit: mov ax,0x8000 ; cwd ; mov cx,-1 ; idiv cx → #DE
    let m3 = try machine64([
      0x66, 0xB8, 0, 0x80, 0x66, 0x99, 0x66, 0xB9, 0xFF, 0xFF, 0x66, 0xF7, 0xF9, 0xF4,
    ])
    _ = try expectException(m3, 0, hasCode: false)
  }

  // MARK: String operations

  func testRepMovsAndStos() throws {
    // rdi=0x30000 ; mov al,0xAB ; rcx=100 ; rep stosb ; rsi=0x30000 ; rdi=0x31000 ; rcx=25 ; rep movsd ; hlt
    let code: [UInt8] = [
      0x48, 0xC7, 0xC7, 0x00, 0x00, 0x03, 0x00,  // mov rdi,0x30000
      0xB0, 0xAB,  // mov al,0xab
      0x48, 0xC7, 0xC1, 100, 0, 0, 0,  // mov rcx,100
      0xF3, 0xAA,  // rep stosb
      0x48, 0xC7, 0xC6, 0x00, 0x00, 0x03, 0x00,  // mov rsi,0x30000
      0x48, 0xC7, 0xC7, 0x00, 0x10, 0x03, 0x00,  // mov rdi,0x31000
      0x48, 0xC7, 0xC1, 25, 0, 0, 0,  // mov rcx,25
      0xF3, 0xA5,  // rep movsd
      0xF4,
    ]
    let m = try machine64(code)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rcx, 0)
    XCTAssertEqual(g.rsi, 0x30000 + 100)
    XCTAssertEqual(g.rdi, 0x31000 + 100)
    let bytes = try m.memory.readBytes(GuestPhysicalAddress(0x31000), count: 101)
    XCTAssertEqual(Array(bytes[0..<100]), [UInt8](repeating: 0xAB, count: 100))
    XCTAssertEqual(bytes[100], 0)
  }

  func testRepMovsOverlapReplicates() throws {
    // Overlapping forward byte copy replicates the first byte (dst = src + 1).
    try TestMachine(ramMiB: 1).memory.fill(GuestPhysicalAddress(0), count: 1, value: 0)
    let m = try machine64([
      0x48, 0xC7, 0xC6, 0x00, 0x00, 0x03, 0x00,  // mov rsi,0x30000
      0x48, 0xC7, 0xC7, 0x01, 0x00, 0x03, 0x00,  // mov rdi,0x30001
      0x48, 0xC7, 0xC1, 16, 0, 0, 0,  // mov rcx,16
      0xF3, 0xA4, 0xF4,  // rep movsb ; hlt
    ])
    try m.load([0x5A, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], at: 0x30000)
    try runToHalt(m)
    XCTAssertEqual(
      try m.memory.readBytes(GuestPhysicalAddress(0x30000), count: 17),
      [UInt8](repeating: 0x5A, count: 17))
  }

  func testRepneScasAndRepeCmps() throws {
    // Find 0 in "hello\0" with repne scasb; then repe cmpsb "abcd" vs "abXd".
    let m = try machine64([
      0x48, 0xC7, 0xC7, 0x00, 0x00, 0x03, 0x00,  // mov rdi,0x30000
      0x30, 0xC0,  // xor al,al
      0x48, 0xC7, 0xC1, 0xFF, 0xFF, 0xFF, 0xFF,  // mov rcx,-1
      0xF2, 0xAE,  // repne scasb
      0x48, 0x89, 0xCB,  // mov rbx,rcx
      0x48, 0xC7, 0xC6, 0x00, 0x10, 0x03, 0x00,  // mov rsi,0x31000
      0x48, 0xC7, 0xC7, 0x00, 0x20, 0x03, 0x00,  // mov rdi,0x32000
      0x48, 0xC7, 0xC1, 4, 0, 0, 0,  // mov rcx,4
      0xF3, 0xA6,  // repe cmpsb
      0xF4,
    ])
    try m.load(Array("hello".utf8) + [0], at: 0x30000)
    try m.load(Array("abcd".utf8), at: 0x31000)
    try m.load(Array("abXd".utf8), at: 0x32000)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rbx, UInt64(bitPattern: -7))  // -1 - 6 bytes scanned
    XCTAssertEqual(g.rcx, 1)  // stopped after the third byte
    XCTAssertEqual(g.rsi, 0x31003)
    XCTAssertEqual(g.rflags & zf, 0)
  }

  // MARK: Paging

  /// Clears the PD entry mapping [addr, addr+2MiB) in the harness identity map.
  func setPDE(_ m: TestMachine, _ addr: UInt64, _ value: UInt64) throws {
    try m.memory.write(GuestPhysicalAddress(0x72000 + (addr >> 21) * 8), value: value)
  }

  func testPageFaultNotPresentRead() throws {
    // mov rax,[0x1000000] with that 2 MiB page not present → #PF err 0, CR2
    let m = try machine64([0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x01, 0xF4])
    try setPDE(m, 0x100_0000, 0)
    let r = try expectException(m, 14, hasCode: true)
    XCTAssertEqual(r.code, 0)
    XCTAssertEqual(r.rip, UnitTests.codeBase)
    XCTAssertEqual(try m.cpu.getState().special.cr2, 0x100_0000)
  }

  func testPageFaultWriteReadOnlyAndUser() throws {
    // mov [0x1000010], eax with the page read-only and CR0.WP=1 → err = P|W = 3
    let m = try machine64([0x89, 0x04, 0x25, 0x10, 0x00, 0x00, 0x01, 0xF4])
    try setPDE(m, 0x100_0000, 0x100_0000 | 0x81)
    let r = try expectException(m, 14, hasCode: true)
    XCTAssertEqual(r.code, 3)
    XCTAssertEqual(try m.cpu.getState().special.cr2, 0x100_0010)
    // Same write with CR0.WP=0 succeeds at CPL 0.
    let m2 = try machine64([0x89, 0x04, 0x25, 0x10, 0x00, 0x00, 0x01, 0xF4])
    try setPDE(m2, 0x100_0000, 0x100_0000 | 0x81)
    var s = try m2.cpu.getState()
    s.special.cr0 &= ~CR0.wp
    s.general.rax = 0x77
    try m2.cpu.setState(s)
    try runToHalt(m2)
    XCTAssertEqual(try m2.memory.read(GuestPhysicalAddress(0x100_0010), as: UInt32.self), 0x77)
  }

  func testPageFaultReservedAndFetchNX() throws {
    // jmp to an NX page: err = P | I (0x11)
    let m = try machine64([0xE9, 0xFB, 0xFF, 0xFE, 0x00])  // jmp 0x1000000 (rel32 from 0x10005)
    try setPDE(m, 0x100_0000, 0x100_0000 | 0x83 | PTE.nx)
    let r = try expectException(m, 14, hasCode: true)
    XCTAssertEqual(r.code, 0x11)
    XCTAssertEqual(r.rip, 0x100_0000)
    // Reserved bit (bit 51) set in a PDE → err has RSVD|P.
    let m2 = try machine64([0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x01, 0xF4])
    try setPDE(m2, 0x100_0000, 0x100_0000 | 0x83 | (1 << 51))
    let r2 = try expectException(m2, 14, hasCode: true)
    XCTAssertEqual(r2.code, 0x9)
  }

  func testAccessedDirtyBits() throws {
    // read [0x1000000] then write [0x1200000]
    let m = try machine64([
      0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x01, 0x89, 0x04, 0x25, 0x00, 0x00, 0x20, 0x01, 0xF4,
    ])
    try setPDE(m, 0x100_0000, 0x100_0000 | 0x83)
    try setPDE(m, 0x120_0000, 0x120_0000 | 0x83)
    try runToHalt(m)
    let e1 = try read64(m, 0x72000 + (0x100_0000 >> 21) * 8)
    let e2 = try read64(m, 0x72000 + (0x120_0000 >> 21) * 8)
    XCTAssertEqual(e1 & (PTE.accessed | PTE.dirty), PTE.accessed)
    XCTAssertEqual(e2 & (PTE.accessed | PTE.dirty), PTE.accessed | PTE.dirty)
    XCTAssertGreaterThan(m.cpu.statistics()["mmu.page_walks"] ?? 0, 0)
  }

  func testTLBStaleUntilINVLPG() throws {
    // mov eax,[0x1000000] ; <PDE retargeted by OUT exit handler> ; mov ebx,[0x1000000] ; invlpg [0x1000000] ; mov ecx,[0x1000000]
    let m = try machine64([
      0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x01,  // mov eax,[0x1000000]
      0xE6, 0x80,  // out 0x80,al (pause for the test)
      0x8B, 0x1C, 0x25, 0x00, 0x00, 0x00, 0x01,  // mov ebx,[0x1000000]
      0x0F, 0x01, 0x3C, 0x25, 0x00, 0x00, 0x00, 0x01,  // invlpg [0x1000000]
      0x8B, 0x0C, 0x25, 0x00, 0x00, 0x00, 0x01,  // mov ecx,[0x1000000]
      0xF4,
    ])
    try m.memory.write(GuestPhysicalAddress(0x100_0000), value: UInt32(0x1111))
    try m.memory.write(GuestPhysicalAddress(0x140_0000), value: UInt32(0x2222))
    try setPDE(m, 0x100_0000, 0x100_0000 | 0x83)
    guard case .portIO = try m.cpu.run() else { return XCTFail("expected OUT exit") }
    try setPDE(m, 0x100_0000, 0x140_0000 | 0x83)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax & 0xFFFF, 0x1111)
    XCTAssertEqual(g.rbx & 0xFFFF, 0x1111, "TLB keeps the old translation until INVLPG")
    XCTAssertEqual(g.rcx & 0xFFFF, 0x2222)
  }

  func testCR3WriteFlushesAndWalkIntoNonRAMStops() throws {
    // mov rax, 0xD0000000 ; mov cr3, rax ; mov ebx,[0x1000] → walk reads non-RAM → shutdown
    let m = try machine64([
      0xB8, 0x00, 0x00, 0x00, 0xD0, 0x0F, 0x22, 0xD8, 0x8B, 0x1C, 0x25, 0x00, 0x10, 0x00, 0x00,
      0xF4,
    ])
    let e = try m.cpu.run()
    guard case .shutdown(let reason) = e else { return XCTFail("got \(e)") }
    XCTAssertTrue(reason.contains("page walk hit non-RAM GPA 0xd0000"), reason)
  }

  // MARK: Self-modifying code

  func testSelfModifyingCode() throws {
    // mov byte [rip+patch+1], 0x42 ; patch: mov al, 0x00 ; hlt
    // The store targets the immediate of the very next instruction.
    let m = try machine64([0xC6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x42, 0xB0, 0x00, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax & 0xFF, 0x42)
  }

  func testSelfModifyingLoop() throws {
    // Loop twice over code whose immediate is incremented each pass:
    // L: add ebx, 1 (83 C3 01) ; inc byte [L+2] ; dec ecx ; jnz L ; hlt  → ebx = 1 + 2 + 3
    let code: [UInt8] = [
      0xB9, 3, 0, 0, 0,  // mov ecx,3
      0x31, 0xDB,  // xor ebx,ebx
      0x83, 0xC3, 0x01,  // L (0x10007): add ebx,1
      0xFE, 0x05, 0xF9, 0xFF, 0xFF, 0xFF,  // inc byte [rip-7] → 0x10009
      0xFF, 0xC9,  // dec ecx
      0x75, 0xF3,  // jnz L
      0xF4,
    ]
    let m = try machine64(code)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rbx, 6)
  }

  // MARK: Exceptions, IDT, triple fault

  func testUndefinedOpcodes() throws {
    for code: [UInt8] in [
      [0x0F, 0x0B], [0xF0, 0x01, 0xC0], [0x62, 0x00], [0x0F, 0xFF, 0x00], [0xD6],
    ] {
      let m = try machine64(code + [0xF4])
      let r = try expectException(m, 6, hasCode: false)
      XCTAssertEqual(r.rip, UnitTests.codeBase, "\(code)")
    }
  }

  func testGPOnPrivilegedAndNonCanonical() throws {
    // mov rax, 0x0000800000000000 ; mov rbx,[rax] → #GP(0)
    let m = try machine64([0x48, 0xB8, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x48, 0x8B, 0x18, 0xF4])
    let r = try expectException(m, 13, hasCode: true)
    XCTAssertEqual(r.code, 0)
    // wrmsr to an unknown MSR → #GP(0)
    let m2 = try machine64([0xB9, 0x34, 0x12, 0, 0, 0x0F, 0x30, 0xF4])
    XCTAssertEqual(try expectException(m2, 13, hasCode: true).code, 0)
  }

  func testIDTFrameAndSoftwareInterrupt() throws {
    // int 0x40 → handler; frame RIP = next instruction, CS = 8
    let m = try machine64([0xCD, 0x40, 0xF4])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 0x40)
    XCTAssertEqual(try read64(m, g.rsp), UnitTests.codeBase + 2)
    XCTAssertEqual(try read64(m, g.rsp + 8), 8)
    XCTAssertEqual(try read64(m, g.rsp + 24), 0x80000)  // old RSP
  }

  func testSingleStepTrap() throws {
    // pushfq ; or qword [rsp],0x100 (TF) ; popfq ; nop ; nop ; hlt → #DB after the first NOP
    let m = try machine64([
      0x9C, 0x48, 0x81, 0x0C, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9D, 0x90, 0x90, 0xF4,
    ])
    let r = try expectException(m, 1, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 11)
  }

  func testTripleFaultShutdown() throws {
    // No IDT (limit 0): #UD → #GP → #DF → triple fault
    let m = try machine64([0x0F, 0x0B], idt: false)
    var s = try m.cpu.getState()
    s.special.idt = DescriptorTableRegister(base: 0, limit: 0)
    try m.cpu.setState(s)
    let e = try m.cpu.run()
    guard case .shutdown(let reason) = e else { return XCTFail("got \(e)") }
    XCTAssertTrue(reason.contains("triple fault"), reason)
    XCTAssertTrue(reason.contains("#UD -> #GP -> #DF"), reason)
  }

  func testDoubleFaultDelivered() throws {
    // IDT with only #DF present: #PF → #PF delivery fails (not present gate → #NP) → #DF handler runs
    let m = try machine64([0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x01, 0xF4])
    try setPDE(m, 0x100_0000, 0)
    // Mark vector 14 not present.
    let a = GuestPhysicalAddress(UnitTests.idtBase + 14 * 16)
    let lo = try m.memory.read(a, as: UInt64.self)
    try m.memory.write(a, value: lo & ~(UInt64(1) << 47))
    let r = try expectException(m, 8, hasCode: true)
    XCTAssertEqual(r.code, 0)
  }

  // MARK: Exits

  func testFetchFromNonRAMStopsCleanly() throws {
    // mov eax, 0xD0000000 ; jmp rax
    let m = try machine64([0xB8, 0x00, 0x00, 0x00, 0xD0, 0xFF, 0xE0])
    let e = try m.cpu.run()
    guard case .internalError(let msg) = e else { return XCTFail("got \(e)") }
    XCTAssertTrue(msg.contains("0xd0000000"), msg)
    // Running again stops again instead of crashing.
    guard case .internalError = try m.cpu.run() else { return XCTFail("second run") }
  }

  func testInstructionLimitEndsRunawayLoop() throws {
    var o = InterpreterOptions()
    o.maxInstructions = 100_000
    let m = try machine64([0xEB, 0xFE], options: o)  // jmp $
    XCTAssertEqual(try m.cpu.run(), .instructionLimit(100_000))
  }

  func testPortIOExitsAndIN() throws {
    // mov dx,0x3f8 ; mov al,'A' ; out dx,al ; in al,0x60 ; hlt
    let m = try machine64([0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x41, 0xEE, 0xE4, 0x60, 0xF4])
    XCTAssertEqual(
      try m.cpu.run(), .portIO(PortIOAccess(port: 0x3F8, size: 1, direction: .out, value: 0x41)))
    XCTAssertEqual(try m.cpu.run(), .portIO(PortIOAccess(port: 0x60, size: 1, direction: .in)))
    m.cpu.completeIO(value: 0x9C)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax & 0xFF, 0x9C)
  }

  func testRepOutsIsASequenceOfExits() throws {
    // rsi=0x30000 ; rcx=3 ; dx=0xe9 ; rep outsb ; hlt
    let m = try machine64([
      0x48, 0xC7, 0xC6, 0x00, 0x00, 0x03, 0x00, 0x48, 0xC7, 0xC1, 3, 0, 0, 0, 0x66, 0xBA, 0xE9,
      0x00,
      0xF3, 0x6E, 0xF4,
    ])
    try m.load([0x61, 0x62, 0x63], at: 0x30000)
    var got: [UInt32] = []
    while true {
      let e = try m.cpu.run()
      if case .portIO(let io) = e {
        got.append(io.value)
      } else {
        XCTAssertEqual(e, .halt)
        break
      }
    }
    XCTAssertEqual(got, [0x61, 0x62, 0x63])
    XCTAssertEqual(try regs(m).rcx, 0)
  }

  func testMMIOExits() throws {
    // mov ebx,0xD0000000 ; mov dword [rbx], 0x55 ; mov eax,[rbx+4] ; hlt
    let m = try machine64([
      0xBB, 0x00, 0x00, 0x00, 0xD0, 0xC7, 0x03, 0x55, 0, 0, 0, 0x8B, 0x43, 0x04, 0xF4,
    ])
    XCTAssertEqual(
      try m.cpu.run(),
      .mmio(
        MMIOAccess(address: GuestPhysicalAddress(0xD000_0000), size: 4, isWrite: true, value: 0x55))
    )
    XCTAssertEqual(
      try m.cpu.run(),
      .mmio(MMIOAccess(address: GuestPhysicalAddress(0xD000_0004), size: 4, isWrite: false)))
    m.cpu.completeIO(value: 0xCAFE)
    XCTAssertEqual(try runToHalt(m).rax, 0xCAFE)
  }

  /// Runs to HLT, completing MMIO reads with zero; returns the MMIO writes made.
  func mmioWritesToHalt(_ m: TestMachine) throws -> [MMIOAccess] {
    var writes: [MMIOAccess] = []
    for _ in 0..<100 {
      let e = try m.cpu.run()
      guard case .mmio(let a) = e else {
        XCTAssertEqual(e, .halt)
        return writes
      }
      if a.isWrite { writes.append(a) } else { m.cpu.completeIO(value: 0) }
    }
    XCTFail("no HLT")
    return writes
  }

  /// One instruction that writes MMIO several times makes every write, in order
  /// (kvm-unit-tests emulator: 16-byte SSE stores, page-crossing stores, ENTER).
  func testEveryMMIOWriteOfAnInstructionExits() throws {
    func w(_ a: UInt64, _ size: Int, _ v: UInt64) -> MMIOAccess {
      MMIOAccess(address: GuestPhysicalAddress(a), size: size, isWrite: true, value: v)
    }
    // mov ebx,0xD0000FFE ; mov dword [rbx],0x44332211 ; hlt
    var m = try machine64([
      0xBB, 0xFE, 0x0F, 0x00, 0xD0, 0xC7, 0x03, 0x11, 0x22, 0x33, 0x44, 0xF4,
    ])
    XCTAssertEqual(
      try mmioWritesToHalt(m),
      [
        w(0xD000_0FFE, 1, 0x11), w(0xD000_0FFF, 1, 0x22), w(0xD000_1000, 1, 0x33),
        w(0xD000_1001, 1, 0x44),
      ])
    // mov ebx,0xD0000000 ; pcmpeqd xmm0,xmm0 ; movups [rbx],xmm0 ; hlt
    m = try machine64([
      0xBB, 0x00, 0x00, 0x00, 0xD0, 0x66, 0x0F, 0x76, 0xC0, 0x0F, 0x11, 0x03, 0xF4,
    ])
    var st = try m.cpu.getState()
    st.special.cr4 |= CR4.osfxsr
    try m.cpu.setState(st)
    let sse = try mmioWritesToHalt(m)
    XCTAssertEqual(sse.reduce(0) { $0 + $1.size }, 16, "all 16 bytes of the store")
    XCTAssertEqual(sse.first?.address, GuestPhysicalAddress(0xD000_0000))
    XCTAssertTrue(sse.allSatisfy { $0.value == UInt64.max >> (64 - 8 * $0.size) })
    // mov esp,0xD0000100 ; mov ebp,0x1234 ; enter 0,1 ; hlt
    m = try machine64([
      0xBC, 0x00, 0x01, 0x00, 0xD0, 0xBD, 0x34, 0x12, 0, 0, 0xC8, 0x00, 0x00, 0x01, 0xF4,
    ])
    XCTAssertEqual(
      try mmioWritesToHalt(m), [w(0xD000_00F8, 8, 0x1234), w(0xD000_00F0, 8, 0xD000_00F8)])
  }

  func testHypercall() throws {
    // mov eax,7 ; mov ebx,1 ; vmcall ; hlt
    let m = try machine64([0xB8, 7, 0, 0, 0, 0xBB, 1, 0, 0, 0, 0x0F, 0x01, 0xC1, 0xF4])
    XCTAssertEqual(try m.cpu.run(), .hypercall(number: 7, arguments: [1, 0, 0, 0]))
    m.cpu.setHypercallResult(99)
    XCTAssertEqual(try runToHalt(m).rax, 99)
  }

  final class OneIRQ: InterruptInput {
    var pending = true
    var hasPendingInterrupt: Bool { pending }
    func acknowledgeInterrupt() -> UInt8? {
      pending = false
      return 0x30
    }
  }

  func testHLTWakesOnInterrupt() throws {
    // sti ; hlt ; hlt  — the interrupt is delivered after STI's shadow, handler halts with rax=0x30
    let m = try machine64([0xFB, 0xF4, 0xF4])
    let irq = OneIRQ()
    irq.pending = false
    m.cpu.interruptInput = irq
    XCTAssertEqual(try m.cpu.run(), .halt)  // HLT with nothing pending
    irq.pending = true
    let g = try runToHalt(m)  // delivers vector 0x30, handler halts
    XCTAssertEqual(g.rax, 0x30)
    XCTAssertEqual(try read64(m, g.rsp), UnitTests.codeBase + 2)  // return after the HLT
  }

  func testCPUIDFromPolicy() throws {
    // xor eax,eax ; cpuid ; hlt
    let m = try machine64([0x31, 0xC0, 0x0F, 0xA2, 0xF4])
    let g = try runToHalt(m)
    let expect = CPUIDPolicy.default.lookup(leaf: 0, subleaf: 0)
    XCTAssertEqual(g.rbx, UInt64(expect.ebx))
    XCTAssertEqual(g.rax, UInt64(expect.eax))
  }

  func testCPUIDAPICBitFollowsAPICBaseEnable() throws {
    // mov ecx,0x1B ; mov eax,0xFEE00100 ; xor edx,edx ; wrmsr (APIC globally off)
    // mov eax,1 ; cpuid ; hlt
    let m = try machine64([
      0xB9, 0x1B, 0, 0, 0, 0xB8, 0x00, 0x01, 0xE0, 0xFE, 0x31, 0xD2, 0x0F, 0x30,
      0xB8, 1, 0, 0, 0, 0x0F, 0xA2, 0xF4,
    ])
    XCTAssertNotEqual(CPUIDPolicy.default.lookup(leaf: 1, subleaf: 0).edx & (1 << 9), 0)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rdx & (1 << 9), 0, "CPUID.1:EDX.APIC is clear while the APIC is disabled")
  }

  /// DAS sets CF on the borrow of AL - 6 (kvm-unit-tests realmode: AL=0, AF=1 -> 0xFA, CF).
  func testDASBorrowSetsCF() throws {
    // mov ah,0x10 ; sahf (AF) ; mov al,0 ; das ; hlt   (32-bit protected mode)
    let m = try TestMachine(ramMiB: 16)
    try m.load([0xB4, 0x10, 0x9E, 0xB0, 0x00, 0x2F, 0xF4], at: 0x10000)
    try m.setProtectedMode32(rip: 0x10000)
    XCTAssertEqual(try m.cpu.run(), .halt)
    let g = try regs(m)
    XCTAssertEqual(g.rax & 0xFF, 0xFA)
    XCTAssertEqual(g.rflags & 0xFF, 0x97, "SF AF PF CF")
  }

  func testSALCOutside64BitMode() throws {
    // stc ; salc ; mov bl,al ; clc ; salc ; hlt   (32-bit protected mode)
    let m = try TestMachine(ramMiB: 16)
    try m.load([0xF9, 0xD6, 0x88, 0xC3, 0xF8, 0xD6, 0xF4], at: 0x10000)
    try m.setProtectedMode32(rip: 0x10000)
    XCTAssertEqual(try m.cpu.run(), .halt)
    let g = try regs(m)
    XCTAssertEqual(g.rbx & 0xFF, 0xFF)
    XCTAssertEqual(g.rax & 0xFF, 0)
  }

  func testAPICBaseRefusesX2APICMode() throws {
    // mov ecx,0x1B ; mov eax,0xFEE00D00 (EN | EXTD | BSP) ; xor edx,edx ; wrmsr ; hlt
    let m = try machine64([
      0xB9, 0x1B, 0, 0, 0, 0xB8, 0x00, 0x0D, 0xE0, 0xFE, 0x31, 0xD2, 0x0F, 0x30, 0xF4,
    ])
    _ = try expectException(m, 13, hasCode: true)
  }

  // MARK: Other instructions

  func testCmpxchgXaddBswapBt() throws {
    let code: [UInt8] = [
      0xB8, 5, 0, 0, 0,  // mov eax,5
      0xBB, 5, 0, 0, 0,  // mov ebx,5
      0xB9, 9, 0, 0, 0,  // mov ecx,9
      0x0F, 0xB1, 0xCB,  // cmpxchg ebx,ecx → ebx=9, ZF
      0xBA, 1, 0, 0, 0,  // mov edx,1
      0x0F, 0xC1, 0xD3,  // xadd ebx,edx → ebx=10, edx=9
      0xBE, 0x78, 0x56, 0x34, 0x12,  // mov esi,0x12345678
      0x0F, 0xCE,  // bswap esi
      0xBF, 0x08, 0, 0, 0,  // mov edi,8
      0x0F, 0xAB, 0xFD,  // bts ebp,edi
      0xF4,
    ]
    let m = try machine64(code)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rbx, 10)
    XCTAssertEqual(g.rdx, 9)
    XCTAssertEqual(g.rsi, 0x7856_3412)
    XCTAssertEqual(g.rbp, 0x100)
  }

  func testBtMemoryBitOffset() throws {
    // mov rbx,0x30000 ; mov eax,35 ; bts [rbx],eax → sets bit 3 of dword at 0x30004 ; mov eax,-1 ; bt [rbx],eax → bit 31 of dword at 0x2fffc
    let m = try machine64([
      0x48, 0xC7, 0xC3, 0x00, 0x00, 0x03, 0x00, 0xB8, 35, 0, 0, 0, 0x0F, 0xAB, 0x03, 0xB8, 0xFF,
      0xFF, 0xFF,
      0xFF, 0x0F, 0xA3, 0x03, 0xF4,
    ])
    try m.memory.write(GuestPhysicalAddress(0x2FFFC), value: UInt32(0x8000_0000))
    let g = try runToHalt(m)
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x30004), as: UInt32.self), 8)
    XCTAssertEqual(g.rflags & cf, cf)
  }

  func testPushPopCallRetEnterLeave() throws {
    let code: [UInt8] = [
      0xE8, 0x02, 0, 0, 0,  // call +2 → 0x10007
      0xF4, 0x90,
      0xC8, 0x10, 0x00, 0x00,  // enter 16,0
      0x48, 0x89, 0xE3,  // mov rbx,rsp
      0xC9,  // leave
      0x58,  // pop rax (return address)
      0xF4,
    ]
    let m = try machine64(code)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, UnitTests.codeBase + 5)
    XCTAssertEqual(g.rbx, 0x80000 - 8 - 8 - 16)
    XCTAssertEqual(g.rsp, 0x80000)
  }

  func testFxsaveLayout() throws {
    // fninit ; fnstcw [0x30000] ; fxsave [0x31000] ; hlt
    let m = try machine64([
      0xDB, 0xE3, 0xD9, 0x3C, 0x25, 0x00, 0x00, 0x03, 0x00, 0x0F, 0xAE, 0x04, 0x25, 0x00, 0x10,
      0x03, 0x00,
      0xF4,
    ])
    try runToHalt(m)
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x30000), as: UInt16.self), 0x37F)
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x31000), as: UInt16.self), 0x37F)
    XCTAssertEqual(try m.memory.read(GuestPhysicalAddress(0x31018), as: UInt32.self), 0x1F80)
  }

  func testNMWhenTaskSwitched() throws {
    // mov rax,cr0 ; or eax,8 ; mov cr0,rax ; fninit → #NM
    let m = try machine64([0x0F, 0x20, 0xC0, 0x83, 0xC8, 0x08, 0x0F, 0x22, 0xC0, 0xDB, 0xE3, 0xF4])
    let r = try expectException(m, 7, hasCode: false)
    XCTAssertEqual(r.rip, UnitTests.codeBase + 9)
  }

  // MARK: Mode switches

  func testRealToProtectedTo64() throws {
    // Real mode at 0x7C00: load GDT, set PE, far jump to 32-bit code; enable PAE+LME+PG, far jump to 64-bit.
    let m = try TestMachine(ramMiB: 16)
    // GDT at 0x600: null, code64 0x08, data 0x10, code32 0x18; descriptor (limit, base) at 0x5F0.
    let gdt: [UInt64] = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0x00CF_9A00_0000_FFFF]
    for (i, d) in gdt.enumerated() {
      try m.memory.write(GuestPhysicalAddress(0x600 + UInt64(i) * 8), value: d)
    }
    try m.memory.write(GuestPhysicalAddress(0x5F0), value: UInt16(31))
    try m.memory.write(GuestPhysicalAddress(0x5F2), value: UInt32(0x600))
    // Identity page tables at 0x1000 (PML4) / 0x2000 (PDPT) / 0x3000 (PD, 2 MiB pages).
    try m.memory.write(GuestPhysicalAddress(0x1000), value: UInt64(0x2003))
    try m.memory.write(GuestPhysicalAddress(0x2000), value: UInt64(0x3003))
    try m.memory.write(GuestPhysicalAddress(0x3000), value: UInt64(0x83))
    let real: [UInt8] = [
      0xFA,  // cli
      0x0F, 0x01, 0x16, 0xF0, 0x05,  // lgdt [0x5f0]
      0x0F, 0x20, 0xC0,  // mov eax,cr0
      0x66, 0x83, 0xC8, 0x01,  // or eax,1
      0x0F, 0x22, 0xC0,  // mov cr0,eax
      0x66, 0xEA, 0x00, 0x7D, 0x00, 0x00, 0x18, 0x00,  // jmp dword 0x18:0x7d00
    ]
    let pm32: [UInt8] = [
      0xB8, 0x10, 0, 0, 0, 0x8E, 0xD8, 0x8E, 0xD0,  // mov eax,0x10 ; mov ds,ax ; mov ss,ax
      0xB8, 0x00, 0x10, 0, 0, 0x0F, 0x22, 0xD8,  // mov eax,0x1000 ; mov cr3,eax
      0x0F, 0x20, 0xE0, 0x83, 0xC8, 0x20, 0x0F, 0x22, 0xE0,  // cr4 |= PAE
      0xB9, 0x80, 0, 0, 0xC0, 0x0F, 0x32, 0x0D, 0x00, 0x01, 0, 0, 0x0F, 0x30,  // EFER.LME
      0x0F, 0x20, 0xC0, 0x0D, 0, 0, 0, 0x80, 0x0F, 0x22, 0xC0,  // CR0.PG
      0xEA, 0x00, 0x7E, 0x00, 0x00, 0x08, 0x00,  // jmp 0x08:0x7e00
    ]
    let lm64: [UInt8] = [0x48, 0xB8, 1, 2, 3, 4, 5, 6, 7, 8, 0xF4]  // mov rax,0x0807060504030201 ; hlt
    try m.load(real, at: 0x7C00)
    try m.load(pm32, at: 0x7D00)
    try m.load(lm64, at: 0x7E00)
    var s = CPUState()
    s.general.rip = 0x7C00
    try m.cpu.setState(s)
    XCTAssertEqual(try m.cpu.run(), .halt)
    let st = try m.cpu.getState()
    XCTAssertEqual(st.general.rax, 0x0807_0605_0403_0201)
    XCTAssertEqual(st.special.efer & EFER.lma, EFER.lma)
    XCTAssertEqual(st.special.cs.selector, 0x08)
    XCTAssertTrue(st.special.cs.l)
  }

  func testRealModeIVTAndSegments() throws {
    // Real mode: IVT[0x21] = 0000:0x8000 handler (mov bx,0x1234 ; iret); int 0x21 ; mov cx,ds:[0x10] via DS=0x100
    let m = try TestMachine(ramMiB: 16)
    try m.memory.write(GuestPhysicalAddress(0x21 * 4), value: UInt32(0x0000_8000))
    try m.load([0xBB, 0x34, 0x12, 0xCF], at: 0x8000)
    try m.memory.write(GuestPhysicalAddress(0x1010), value: UInt16(0xBEEF))
    try m.load(
      [0xCD, 0x21, 0xB8, 0x00, 0x01, 0x8E, 0xD8, 0x8B, 0x0E, 0x10, 0x00, 0xF4], at: 0x7C00)
    var s = CPUState()
    s.general.rip = 0x7C00
    s.general.rsp = 0x7000
    try m.cpu.setState(s)
    XCTAssertEqual(try m.cpu.run(), .halt)
    let g = try m.cpu.getState().general
    XCTAssertEqual(g.rbx, 0x1234)
    XCTAssertEqual(g.rcx, 0xBEEF)
    XCTAssertEqual(g.rsp, 0x7000)
  }

  func testStatisticsCounters() throws {
    let m = try machine64([0xB9, 0x10, 0, 0, 0, 0xE2, 0xFE, 0xF4])  // mov ecx,16 ; loop $ ; hlt
    try runToHalt(m)
    let st = m.cpu.statistics()
    XCTAssertEqual(st["instructions"], 18)
    XCTAssertEqual(st["exits.halt"], 1)
    XCTAssertNotNil(st["tlb.misses"])
  }
}
