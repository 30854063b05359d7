import Dispatch
import Engine
import KVM
import Memory
import X86
import XCTest

/// Set by the watchdog thread before it signals; read after waiting for that signal.
private final class TimeoutFlag: @unchecked Sendable { var fired = false }

/// End-to-end tests of the KVM engine with tiny hand-assembled guests.
/// Each test skips (saying why) only when /dev/kvm is absent or cannot be opened.
final class KVMTests: XCTestCase {

  // MARK: Fixtures

  /// Guest RAM of the test VMs: 32 pages at GPA 0.
  static let ramPages = 32
  static let codeAddress: UInt64 = 0x1000
  static let gdtAddress: UInt64 = 0x500
  static let pml4Address: UInt64 = 0x8000

  /// The device under test; SWIFTVMM_KVM_DEVICE overrides it (e.g. to check the skip path).
  static let devicePath =
    ProcessInfo.processInfo.environment["SWIFTVMM_KVM_DEVICE"] ?? KVMHost.defaultDevicePath

  /// Skips the test when /dev/kvm cannot be used, printing the reason.
  func requireKVM() throws {
    let host = KVMHost.probe(devicePath: Self.devicePath)
    if let reason = host.openError {
      print("KVMTests: skipping \(name): \(reason)")
      throw XCTSkip("KVM unavailable: \(reason)")
    }
  }

  func makeMemory(pages: Int = ramPages) throws -> GuestMemory {
    let bytes = UInt64(pages) * pageSize
    return try GuestMemory(
      pool: HostFramePool(bytes: bytes),
      regions: [RAMRegion(start: GuestPhysicalAddress(0), size: bytes)],
      layout: .contiguous)
  }

  /// A VM with guest code at `codeAddress` and one vCPU.
  func makeGuest(
    code: [UInt8], irqChip: Bool = false, cpuid: CPUIDPolicy? = .default
  ) throws -> (KVMVirtualMachine, KVMVirtualCPU) {
    try requireKVM()
    let memory = try makeMemory()
    try memory.write(GuestPhysicalAddress(Self.codeAddress), bytes: code)
    let vm = try KVMVirtualMachine(memory: memory, irqChip: irqChip, devicePath: Self.devicePath)
    let vcpu = try vm.createVCPU(id: 0, cpuid: cpuid)
    return (vm, vcpu)
  }

  static func realModeState(rip: UInt64 = codeAddress) -> CPUState {
    var s = CPUState()
    s.general.rip = rip
    s.general.rsp = 0x7000
    return s
  }

  /// Flat 32-bit protected mode, paging off. Writes a GDT matching the segments.
  static func protectedModeState(memory: GuestMemory) throws -> CPUState {
    try writeGDT(memory, code: 0x00CF_9B00_0000_FFFF)
    var s = CPUState()
    s.general.rip = codeAddress
    s.general.rsp = 0x7000
    s.special.cs = .flatCode32(selector: 8)
    for seg in [\SpecialRegisters.ds, \.es, \.fs, \.gs, \.ss] {
      s.special[keyPath: seg] = .flatData(selector: 16)
    }
    s.special.gdt = DescriptorTableRegister(base: gdtAddress, limit: 23)
    s.special.cr0 = CR0.pe | CR0.et
    return s
  }

  /// Long mode with the low 4 GiB identity-mapped by 2 MiB pages. EFER.LMA is
  /// left for the engine to derive from LME and CR0.PG.
  static func longModeState(memory: GuestMemory) throws -> CPUState {
    try writeGDT(memory, code: 0x00AF_9B00_0000_FFFF)
    let pdpt = pml4Address + 0x1000
    let pd = pml4Address + 0x2000
    try memory.write(GuestPhysicalAddress(pml4Address), value: pdpt | PTE.present | PTE.writable)
    for i in 0..<UInt64(4) {
      try memory.write(
        GuestPhysicalAddress(pdpt + 8 * i), value: (pd + 0x1000 * i) | PTE.present | PTE.writable)
    }
    for i in 0..<UInt64(2048) {
      try memory.write(
        GuestPhysicalAddress(pd + 8 * i),
        value: (i << 21) | PTE.present | PTE.writable | PTE.pageSize)
    }
    var s = CPUState()
    s.general.rip = codeAddress
    s.general.rsp = 0x7000
    s.special.cs = .code64(selector: 8)
    for seg in [\SpecialRegisters.ds, \.es, \.fs, \.gs, \.ss] {
      s.special[keyPath: seg] = .flatData(selector: 16)
    }
    s.special.gdt = DescriptorTableRegister(base: gdtAddress, limit: 23)
    s.special.cr0 = CR0.pe | CR0.et | CR0.ne | CR0.wp | CR0.pg
    s.special.cr3 = pml4Address
    s.special.cr4 = CR4.pae
    s.special.efer = EFER.lme
    return s
  }

  static func writeGDT(_ memory: GuestMemory, code: UInt64) throws {
    try memory.write(GuestPhysicalAddress(gdtAddress), value: UInt64(0))
    try memory.write(GuestPhysicalAddress(gdtAddress + 8), value: code)
    try memory.write(GuestPhysicalAddress(gdtAddress + 16), value: UInt64(0x00CF_9300_0000_FFFF))
  }

  /// Runs once, kicking the vCPU if it has not exited after `seconds`, so a
  /// guest that never exits fails the test instead of hanging it.
  func runOnce(
    _ vcpu: KVMVirtualCPU, timeout seconds: Double = 10, file: StaticString = #filePath,
    line: UInt = #line
  ) throws -> VMExit {
    let done = DispatchSemaphore(value: 0)
    let fired = DispatchSemaphore(value: 0)
    let timedOut = TimeoutFlag()
    DispatchQueue.global().async {
      if done.wait(timeout: .now() + seconds) == .timedOut {
        timedOut.fired = true
        vcpu.kick()
      }
      fired.signal()
    }
    let exit = try vcpu.run()
    done.signal()
    fired.wait()
    if timedOut.fired {
      XCTFail("guest did not exit within \(seconds) s (last exit \(exit))", file: file, line: line)
    }
    return exit
  }

  func out(_ port: UInt16, _ size: Int, _ value: UInt32) -> VMExit {
    .portIO(PortIOAccess(port: port, size: size, direction: .out, value: value))
  }

  func `in`(_ port: UInt16, _ size: Int) -> VMExit {
    .portIO(PortIOAccess(port: port, size: size, direction: .in))
  }

  // MARK: Guest code (assembled with clang, bytes checked with llvm-objdump)

  /// 16-bit: mov al,'A'; mov dx,0x3f8; out dx,al; hlt
  static let realOut: [UInt8] = [0xB0, 0x41, 0xBA, 0xF8, 0x03, 0xEE, 0xF4]

  /// 16-bit: in al,0x80; out 0x81,al; in ax,0x80; out 0x82,ax; in eax,0x80; out 0x84,eax; hlt
  static let realIn: [UInt8] = [
    0xE4, 0x80, 0xE6, 0x81, 0xE5, 0x80, 0xE7, 0x82, 0x66, 0xE5, 0x80, 0x66, 0xE7, 0x84, 0xF4,
  ]

  /// 16-bit: spin: jmp spin; hlt
  static let realSpin: [UInt8] = [0xEB, 0xFE, 0xF4]

  /// 16-bit: program the master 8259 (ICW1 0x11, ICW2 base 8, ICW3 4, ICW4 1,
  /// mask all but IRQ4), out 0x99 (ready), sti; 1: hlt; jmp 1b.
  /// Handler at +0x1A: mov al,0x42; out 0x98,al; cli; hlt
  static let realIRQ: [UInt8] = [
    0xB0, 0x11, 0xE6, 0x20, 0xB0, 0x08, 0xE6, 0x21, 0xB0, 0x04, 0xE6, 0x21, 0xB0, 0x01, 0xE6, 0x21,
    0xB0, 0xEF, 0xE6, 0x21, 0xE6, 0x99, 0xFB, 0xF4, 0xEB, 0xFD,
    0xB0, 0x42, 0xE6, 0x98, 0xFA, 0xF4,
  ]
  static let realIRQHandlerOffset: UInt16 = 0x1A

  /// 32-bit: mov al,'B'; mov dx,0x3f8; out dx,al; mov dword [0xd0000000],0x12345678;
  /// mov eax,[0xd0000004]; out 0x80,eax; mov word [0xd0000010],0xbeef;
  /// mov byte [0xd0000020],0x5a; hlt
  static let protectedMain: [UInt8] = [
    0xB0, 0x42, 0x66, 0xBA, 0xF8, 0x03, 0xEE,
    0xC7, 0x05, 0x00, 0x00, 0x00, 0xD0, 0x78, 0x56, 0x34, 0x12,
    0xA1, 0x04, 0x00, 0x00, 0xD0, 0xE7, 0x80,
    0x66, 0xC7, 0x05, 0x10, 0x00, 0x00, 0xD0, 0xEF, 0xBE,
    0xC6, 0x05, 0x20, 0x00, 0x00, 0xD0, 0x5A, 0xF4,
  ]

  /// 32-bit: mov esi,0x2000; mov ecx,4; mov dx,0x3f8; rep outsb;
  /// mov edi,0x3000; mov ecx,3; mov dx,0x80; rep insw; hlt
  static let protectedString: [UInt8] = [
    0xBE, 0x00, 0x20, 0x00, 0x00, 0xB9, 0x04, 0x00, 0x00, 0x00, 0x66, 0xBA, 0xF8, 0x03, 0xF3, 0x6E,
    0xBF, 0x00, 0x30, 0x00, 0x00, 0xB9, 0x03, 0x00, 0x00, 0x00, 0x66, 0xBA, 0x80, 0x00, 0xF3, 0x66,
    0x6D, 0xF4,
  ]

  /// 32-bit: cpuid(0) -> out 0x10 ebx, edx, ecx; cpuid(0x40000000) -> out 0x10 ebx;
  /// cpuid(1) -> out 0x11 ecx, out 0x12 ebx; hlt
  static let protectedCPUID: [UInt8] = [
    0x31, 0xC0, 0x31, 0xC9, 0x0F, 0xA2, 0x89, 0xD8, 0xE7, 0x10, 0x89, 0xD0, 0xE7, 0x10, 0x89, 0xC8,
    0xE7, 0x10, 0xB8, 0x00, 0x00, 0x00, 0x40, 0x0F, 0xA2, 0x89, 0xD8, 0xE7, 0x10, 0xB8, 0x01, 0x00,
    0x00, 0x00, 0x0F, 0xA2, 0x89, 0xC8, 0xE7, 0x11, 0x89, 0xD8, 0xE7, 0x12, 0xF4,
  ]

  /// ud2 (with no usable IDT: #UD -> #DF -> triple fault)
  static let ud2: [UInt8] = [0x0F, 0x0B]

  /// 64-bit: mov al,'C'; mov dx,0x3f8; out dx,al; mov eax,0xd0000000;
  /// mov rbx,0x1122334455667788; mov [rax],rbx; mov rcx,[rax+8]; mov eax,ecx; out 0x80,eax; hlt
  static let longMain: [UInt8] = [
    0xB0, 0x43, 0x66, 0xBA, 0xF8, 0x03, 0xEE, 0xB8, 0x00, 0x00, 0x00, 0xD0,
    0x48, 0xBB, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
    0x48, 0x89, 0x18, 0x48, 0x8B, 0x48, 0x08, 0x89, 0xC8, 0xE7, 0x80, 0xF4,
  ]

  // MARK: Tests

  func testHostProbeDescribesKVM() throws {
    let host = KVMHost.probe(devicePath: Self.devicePath)
    print(host.report)
    XCTAssertTrue(host.report.contains("kind:"))
    try requireKVM()
    XCTAssertEqual(host.apiVersion, 12)
    XCTAssertNotEqual(host.kind, .none)
    XCTAssertFalse(host.supportedCPUID.isEmpty, host.supportedCPUIDError ?? "")
    XCTAssertTrue(host.supportedCPUID.contains { $0.function == 0 })
    if host.modules.contains("kvm_pvm") {
      XCTAssertEqual(host.kind, .pvm)
      XCTAssertFalse(host.hardwareVirtualization)
    }
  }

  func testMissingDeviceIsAnErrorNotACrash() throws {
    let host = KVMHost.probe(devicePath: "/nonexistent/kvm")
    XCTAssertFalse(host.isUsable)
    XCTAssertFalse(host.hardwareVirtualization)
    XCTAssertTrue(host.openError?.contains("does not exist") ?? false)
    let memory = try makeMemory()
    XCTAssertThrowsError(try KVMVirtualMachine(memory: memory, devicePath: "/nonexistent/kvm")) {
      XCTAssertTrue("\($0)".contains("/nonexistent/kvm"), "\($0)")
    }
  }

  func testScatteredMemoryIsRefused() throws {
    let bytes = UInt64(Self.ramPages) * pageSize
    let memory = try GuestMemory(
      pool: HostFramePool(bytes: bytes),
      regions: [RAMRegion(start: GuestPhysicalAddress(0), size: bytes)],
      layout: .scattered(seed: 7))
    XCTAssertThrowsError(try KVMVirtualMachine(memory: memory, devicePath: Self.devicePath)) {
      XCTAssertTrue("\($0)".contains(".contiguous"), "\($0)")
    }
  }

  func testRealModeOutThenHalt() throws {
    let (_, vcpu) = try makeGuest(code: Self.realOut)
    try vcpu.setState(Self.realModeState())
    XCTAssertEqual(try runOnce(vcpu), out(0x3F8, 1, 0x41))
    XCTAssertEqual(try runOnce(vcpu), .halt)
    XCTAssertEqual(try vcpu.getState().general.rip, Self.codeAddress + UInt64(Self.realOut.count))
    let stats = vcpu.statistics()
    XCTAssertEqual(stats["exits.io"], 1)
    XCTAssertEqual(stats["exits.halt"], 1)
  }

  func testInRoundTripsAllSizes() throws {
    let (_, vcpu) = try makeGuest(code: Self.realIn)
    try vcpu.setState(Self.realModeState())
    XCTAssertEqual(try runOnce(vcpu), `in`(0x80, 1))
    vcpu.completeIO(value: 0xFFFF_FF5A)  // only the low byte counts
    XCTAssertEqual(try runOnce(vcpu), out(0x81, 1, 0x5A))
    XCTAssertEqual(try runOnce(vcpu), `in`(0x80, 2))
    vcpu.completeIO(value: 0xBEEF)
    XCTAssertEqual(try runOnce(vcpu), out(0x82, 2, 0xBEEF))
    XCTAssertEqual(try runOnce(vcpu), `in`(0x80, 4))
    vcpu.completeIO(value: 0xCAFE_F00D)
    XCTAssertEqual(try runOnce(vcpu), out(0x84, 4, 0xCAFE_F00D))
    XCTAssertEqual(try runOnce(vcpu), .halt)
    XCTAssertEqual(try vcpu.getState().general.rax & 0xFFFF_FFFF, 0xCAFE_F00D)
  }

  func testProtectedModePortAndMMIO() throws {
    let (vm, vcpu) = try makeGuest(code: Self.protectedMain)
    try vcpu.setState(Self.protectedModeState(memory: vm.memory))
    XCTAssertEqual(try runOnce(vcpu), out(0x3F8, 1, 0x42))
    XCTAssertEqual(
      try runOnce(vcpu),
      .mmio(
        MMIOAccess(
          address: GuestPhysicalAddress(0xD000_0000), size: 4, isWrite: true, value: 0x1234_5678)))
    XCTAssertEqual(
      try runOnce(vcpu),
      .mmio(MMIOAccess(address: GuestPhysicalAddress(0xD000_0004), size: 4, isWrite: false)))
    vcpu.completeIO(value: 0x8765_4321)
    XCTAssertEqual(try runOnce(vcpu), out(0x80, 4, 0x8765_4321))
    XCTAssertEqual(
      try runOnce(vcpu),
      .mmio(
        MMIOAccess(
          address: GuestPhysicalAddress(0xD000_0010), size: 2, isWrite: true, value: 0xBEEF)))
    XCTAssertEqual(
      try runOnce(vcpu),
      .mmio(
        MMIOAccess(address: GuestPhysicalAddress(0xD000_0020), size: 1, isWrite: true, value: 0x5A))
    )
    XCTAssertEqual(try runOnce(vcpu), .halt)
    XCTAssertEqual(vcpu.statistics()["exits.mmio"], 4)
  }

  func testStringPortIOArrivesElementByElement() throws {
    let (vm, vcpu) = try makeGuest(code: Self.protectedString)
    try vm.memory.write(GuestPhysicalAddress(0x2000), bytes: Array("wxyz".utf8))
    try vcpu.setState(Self.protectedModeState(memory: vm.memory))
    for c in "wxyz".utf8 {
      XCTAssertEqual(try runOnce(vcpu), out(0x3F8, 1, UInt32(c)))
    }
    for k in 1...3 {
      XCTAssertEqual(try runOnce(vcpu), `in`(0x80, 2))
      vcpu.completeIO(value: UInt64(0x1111 * k))
    }
    XCTAssertEqual(try runOnce(vcpu), .halt)
    XCTAssertEqual(
      try vm.memory.readBytes(GuestPhysicalAddress(0x3000), count: 6),
      [0x11, 0x11, 0x22, 0x22, 0x33, 0x33])
    let state = try vcpu.getState()
    XCTAssertEqual(state.general.rcx & 0xFFFF_FFFF, 0)
    XCTAssertEqual(state.general.rdi & 0xFFFF_FFFF, 0x3006)
    XCTAssertEqual(vcpu.statistics()["exits.io_elements"], 7)
  }

  func testLongModePortAndMMIO() throws {
    let (vm, vcpu) = try makeGuest(code: Self.longMain)
    try vcpu.setState(Self.longModeState(memory: vm.memory))
    XCTAssertEqual(try runOnce(vcpu), out(0x3F8, 1, 0x43))
    XCTAssertEqual(
      try runOnce(vcpu),
      .mmio(
        MMIOAccess(
          address: GuestPhysicalAddress(0xD000_0000), size: 8, isWrite: true,
          value: 0x1122_3344_5566_7788)))
    XCTAssertEqual(
      try runOnce(vcpu),
      .mmio(MMIOAccess(address: GuestPhysicalAddress(0xD000_0008), size: 8, isWrite: false)))
    vcpu.completeIO(value: 0x0102_0304_0506_0708)
    XCTAssertEqual(try runOnce(vcpu), out(0x80, 4, 0x0506_0708))
    XCTAssertEqual(try runOnce(vcpu), .halt)
    let state = try vcpu.getState()
    XCTAssertEqual(state.general.rcx, 0x0102_0304_0506_0708)
    XCTAssertNotEqual(state.special.efer & EFER.lma, 0, "EFER.LMA derived from LME + PG")
    XCTAssertTrue(state.special.cs.l)
  }

  func testTripleFaultIsShutdown() throws {
    for long in [false, true] {
      let (vm, vcpu) = try makeGuest(code: Self.ud2)
      var state =
        long
        ? try Self.longModeState(memory: vm.memory) : try Self.protectedModeState(memory: vm.memory)
      state.special.idt = DescriptorTableRegister(base: 0, limit: 0)
      try vcpu.setState(state)
      XCTAssertEqual(
        try runOnce(vcpu), .shutdown(reason: "triple fault"), long ? "long mode" : "protected mode")
      XCTAssertEqual(vcpu.statistics()["exits.shutdown"], 1)
    }
  }

  func testStateRoundTrip() throws {
    let (vm, vcpu) = try makeGuest(code: Self.longMain)
    var state = try Self.longModeState(memory: vm.memory)
    state.special.efer |= EFER.lma | EFER.nxe | EFER.sce
    state.special.idt = DescriptorTableRegister(base: 0x6000, limit: 0xFFF)
    state.special.cr2 = 0xDEAD_B000
    state.special.fs.base = 0x7FFF_1234_0000
    state.special.gs.base = 0xFFFF_8000_0000_0000
    var g = GeneralRegisters()
    for i in 0..<16 where i != 4 { g[i] = 0x0101_0101_0101_0101 &* UInt64(i + 1) }
    g.rsp = 0x6FF0
    g.rip = Self.codeAddress
    g.rflags = RFLAGS.fixed | RFLAGS.cf | RFLAGS.zf
    state.general = g
    try vcpu.setState(state)
    let back = try vcpu.getState()
    XCTAssertEqual(back.general, state.general)
    XCTAssertEqual(back.special.cs, state.special.cs)
    XCTAssertEqual(back.special.ds, state.special.ds)
    XCTAssertEqual(back.special.ss, state.special.ss)
    XCTAssertEqual(back.special.fs.base, state.special.fs.base)
    XCTAssertEqual(back.special.gs.base, state.special.gs.base)
    XCTAssertEqual(back.special.gdt, state.special.gdt)
    XCTAssertEqual(back.special.idt, state.special.idt)
    XCTAssertEqual(back.special.cr0, state.special.cr0)
    XCTAssertEqual(back.special.cr2, state.special.cr2)
    XCTAssertEqual(back.special.cr3, state.special.cr3)
    XCTAssertEqual(back.special.cr4, state.special.cr4)
    XCTAssertEqual(back.special.efer, state.special.efer)
    XCTAssertEqual(back.special.apicBase, state.special.apicBase)

    // A real-mode state survives the trip too, and the guest then runs from it.
    try vcpu.setState(Self.realModeState(rip: 0x2000))
    let real = try vcpu.getState()
    XCTAssertEqual(real.general.rip, 0x2000)
    XCTAssertEqual(real.special.cr0 & CR0.pe, 0)
    XCTAssertEqual(real.special.efer, 0)
    XCTAssertEqual(real.special.cs.base, 0)
  }

  func testInconsistentStateIsAnError() throws {
    let (vm, vcpu) = try makeGuest(code: Self.ud2)
    var state = try Self.longModeState(memory: vm.memory)
    state.special.cr4 = 0  // long mode without PAE: KVM refuses
    XCTAssertThrowsError(try vcpu.setState(state)) {
      XCTAssertTrue("\($0)".contains("KVM_SET_SREGS"), "\($0)")
    }
  }

  func testCPUIDPolicyIsWhatTheGuestSees() throws {
    let (vm, vcpu) = try makeGuest(code: Self.protectedCPUID, cpuid: .default)
    try vcpu.setState(Self.protectedModeState(memory: vm.memory))
    // Leaf 0's vendor (EBX, EDX, ECX order is the string's order), then our hypervisor signature.
    let v = Array(CPUIDPolicy.default.vendor.utf8)
    let chunks = stride(from: 0, to: 12, by: 4).map {
      String(decoding: v[$0..<($0 + 4)], as: UTF8.self)
    }
    let words = (chunks + ["Swif"]).map { s in
      s.utf8.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
    }
    for w in words { XCTAssertEqual(try runOnce(vcpu), out(0x10, 4, w)) }
    guard case .portIO(let leaf1) = try runOnce(vcpu) else { return XCTFail("expected out 0x11") }
    XCTAssertEqual(leaf1.port, 0x11)
    XCTAssertNotEqual(leaf1.value & CPUIDFeature.hypervisor, 0)
    guard case .portIO(let ebx) = try runOnce(vcpu) else { return XCTFail("expected out 0x12") }
    XCTAssertEqual(ebx.value >> 24, 0, "initial APIC ID of vCPU 0")
    XCTAssertEqual(try runOnce(vcpu), .halt)
  }

  func testSecondVCPUSeesItsOwnAPICID() throws {
    let (vm, vcpu0) = try makeGuest(code: Self.protectedCPUID)
    let vcpu1 = try vm.createVCPU(id: 1)
    XCTAssertThrowsError(try vm.createVCPU(id: 1))
    for (id, vcpu) in [(UInt32(1), vcpu1), (0, vcpu0)] {
      try vcpu.setState(Self.protectedModeState(memory: vm.memory))
      for _ in 0..<5 { _ = try runOnce(vcpu) }
      guard case .portIO(let ebx) = try runOnce(vcpu), ebx.port == 0x12 else {
        return XCTFail("expected out 0x12 from vCPU \(id)")
      }
      XCTAssertEqual(ebx.value >> 24, id)
      XCTAssertEqual(try runOnce(vcpu), .halt)
    }
  }

  func testMSRRoundTrip() throws {
    let (_, vcpu) = try makeGuest(code: Self.realOut)
    try vcpu.writeMSRs([(MSR.lstar, 0xFFFF_FFFF_8100_0000), (MSR.sysenterCS, 0x10)])
    XCTAssertEqual(try vcpu.readMSRs([MSR.lstar, MSR.sysenterCS]), [0xFFFF_FFFF_8100_0000, 0x10])
  }

  func testKickInterruptsARunningGuest() throws {
    let (_, vcpu) = try makeGuest(code: Self.realSpin)
    try vcpu.setState(Self.realModeState())
    // A kick before run makes the next run return at once.
    vcpu.kick()
    XCTAssertEqual(try runOnce(vcpu), .interrupted)
    // A kick from another thread stops a guest spinning in `jmp $`.
    DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { vcpu.kick() }
    XCTAssertEqual(try runOnce(vcpu), .interrupted)
    XCTAssertEqual(try vcpu.getState().general.rip, Self.codeAddress)
    XCTAssertEqual(vcpu.statistics()["host_kicks"], 2)
    // The vCPU carries on afterwards.
    var s = try vcpu.getState()
    s.general.rip = Self.codeAddress + 2
    try vcpu.setState(s)
    XCTAssertEqual(try runOnce(vcpu), .halt)
  }

  func testInKernelIRQChipDeliversAnInterrupt() throws {
    let (vm, vcpu) = try makeGuest(code: Self.realIRQ, irqChip: true)
    XCTAssertTrue(vm.hasIRQChip, vm.notes.joined(separator: "; "))
    // IVT entry for vector 0x0C (IRQ4 with the PIC base at 8).
    try vm.memory.write(
      GuestPhysicalAddress(0x0C * 4), value: UInt16(Self.codeAddress) + Self.realIRQHandlerOffset)
    try vm.memory.write(GuestPhysicalAddress(0x0C * 4 + 2), value: UInt16(0))
    try vcpu.setState(Self.realModeState())
    // PIC programming is absorbed by the kernel; the first exit is the ready marker.
    XCTAssertEqual(try runOnce(vcpu), out(0x99, 1, 0xEF))
    try vm.setIRQLine(4, level: true)
    // The guest now sleeps in HLT inside KVM; the interrupt wakes it into the handler.
    XCTAssertEqual(try runOnce(vcpu), out(0x98, 1, 0x42))
    try vm.setIRQLine(4, level: false)
  }

  func testIRQLineWithoutIRQChipIsAnError() throws {
    let (vm, _) = try makeGuest(code: Self.realOut, irqChip: false)
    XCTAssertFalse(vm.hasIRQChip)
    XCTAssertThrowsError(try vm.setIRQLine(4, level: true))
  }
}
