import Engine
import X86

extension InterpreterCPU {
  // MARK: Mode

  /// Recomputes the derived mode (code/stack size, 64-bit, effective segment bases).
  func updateMode() {
    protectedMode = cr0 & CR0.pe != 0
    longActive = efer & EFER.lma != 0
    if !protectedMode { cpl = 0 }
    let cs = seg[CS]
    mode64 = longActive && cs.l && protectedMode
    codeSize = mode64 ? 8 : (cs.db ? 4 : 2)
    codeMask = codeSize == 8 ? ~0 : codeSize == 4 ? 0xFFFF_FFFF : 0xFFFF
    defOpSize = codeSize == 2 ? 2 : 4
    stackSize = mode64 ? 8 : (seg[SS].db ? 4 : 2)
    for i in 0..<6 { segBase[i] = (mode64 && i < 4) ? 0 : seg[i].base }
    if !mode64 { for i in 0..<6 { segBase[i] &= 0xFFFF_FFFF } }
    refreshSegmentChecks()
  }

  // MARK: Descriptors

  /// The checks a far RET and IRET make on the code segment they return to:
  /// the raw and parsed descriptor, its table address, the selector's RPL and the error code.
  func returnCodeSegment(_ cs: UInt16) throws(Fault) -> (
    raw: UInt64, d: SegmentRegister, address: UInt64, rpl: Int, err: UInt32
  ) {
    let rpl = Int(cs & 3)
    let err = UInt32(cs & 0xFFFC)
    if cs & 0xFFFC == 0 { throw Fault.gp(0) }
    if rpl < cpl { throw Fault.gp(err) }
    let (raw, a) = try readDescriptor(cs)
    let d = InterpreterCPU.parseDescriptor(raw, selector: cs)
    if !d.s || d.type & 8 == 0 { throw Fault.gp(err) }
    if d.type & 4 != 0 {
      if Int(d.dpl) > rpl { throw Fault.gp(err) }
    } else if Int(d.dpl) != rpl {
      throw Fault.gp(err)
    }
    if !d.present { throw Fault.np(err) }
    return (raw, d, a, rpl, err)
  }

  static func parseDescriptor(_ raw: UInt64, selector: UInt16) -> SegmentRegister {
    var d = SegmentRegister()
    d.selector = selector
    var limit = UInt32(raw & 0xFFFF) | UInt32((raw >> 32) & 0xF_0000)
    d.base = ((raw >> 16) & 0xFF_FFFF) | ((raw >> 32) & 0xFF00_0000)
    d.type = UInt8((raw >> 40) & 0xF)
    d.s = raw & (1 << 44) != 0
    d.dpl = UInt8((raw >> 45) & 3)
    d.present = raw & (1 << 47) != 0
    d.avl = raw & (1 << 52) != 0
    d.l = raw & (1 << 53) != 0
    d.db = raw & (1 << 54) != 0
    d.g = raw & (1 << 55) != 0
    if d.g { limit = (limit << 12) | 0xFFF }
    d.limit = limit
    d.unusable = false
    return d
  }

  /// Linear address of a selector's descriptor; #GP(selector) past the table limit.
  func descriptorAddress(_ sel: UInt16, size: UInt64 = 8) throws(Fault) -> UInt64 {
    let idx = UInt64(sel & 0xFFF8)
    let err = UInt32(sel & 0xFFFC)
    if sel & 4 != 0 {
      if ldtr.unusable || ldtr.selector & 0xFFFC == 0 || idx + size - 1 > UInt64(ldtr.limit) {
        throw Fault.gp(err)
      }
      return ldtr.base &+ idx
    }
    if idx + size - 1 > UInt64(gdtr.limit) { throw Fault.gp(err) }
    return gdtr.base &+ idx
  }

  func readDescriptor(_ sel: UInt16) throws(Fault) -> (raw: UInt64, addr: UInt64) {
    let a = try descriptorAddress(sel)
    return (try readSys(a, 8), a)
  }

  func setAccessed(_ raw: UInt64, _ a: UInt64) throws(Fault) {
    if raw & (1 << 40) == 0 { try writeSys(a, 8, raw | (1 << 40)) }
  }

  static func nullSegment(_ sel: UInt16) -> SegmentRegister {
    var d = SegmentRegister()
    d.selector = sel
    d.base = 0
    d.limit = 0
    d.type = 0
    d.present = false
    d.unusable = true
    return d
  }

  /// MOV/POP/LxS to a data segment register (or SS) with the protected-mode checks.
  func loadSeg(_ s: Int, _ sel: UInt16) throws(Fault) {
    if !protectedMode || rfl & RFLAGS.vm != 0 {
      seg[s].selector = sel
      seg[s].base = UInt64(sel) << 4
      // Real mode keeps the cached limit/attributes (unreal mode works); mark usable.
      seg[s].unusable = false
      seg[s].present = true
      if s == SS || s == CS { updateMode() } else { segBase[s] = seg[s].base }
      refreshSegmentChecks()
      return
    }
    let err = UInt32(sel & 0xFFFC)
    if sel & 0xFFFC == 0 {
      if s == SS {
        if !(mode64 && cpl != 3 && Int(sel & 3) == cpl) { throw Fault.gp(0) }
        var d = InterpreterCPU.nullSegment(sel)
        d.dpl = UInt8(cpl)
        d.db = true
        seg[SS] = d
        updateMode()
        return
      }
      seg[s] = InterpreterCPU.nullSegment(sel)
      segBase[s] = 0
      refreshSegmentChecks()
      return
    }
    let (raw, a) = try readDescriptor(sel)
    var d = InterpreterCPU.parseDescriptor(raw, selector: sel)
    let rpl = Int(sel & 3)
    if s == SS {
      if rpl != cpl || Int(d.dpl) != cpl || !d.s || d.type & 0xA != 0x2 { throw Fault.gp(err) }
      if !d.present { throw Fault.ss(err) }
    } else {
      if !d.s || d.type & 0xA == 0x8 { throw Fault.gp(err) }  // system or execute-only code
      let conformingCode = d.type & 0xC == 0xC
      if !conformingCode && Int(d.dpl) < max(cpl, rpl) { throw Fault.gp(err) }
      if !d.present { throw Fault.np(err) }
    }
    try setAccessed(raw, a)
    d.type |= 1
    seg[s] = d
    if s == SS { updateMode() } else { segBase[s] = (mode64 && s < 4) ? 0 : d.base }
    refreshSegmentChecks()
  }

  /// LDS/LES/LFS/LGS/LSS: offset then selector from memory.
  func loadFarPointer(_ s: Int) throws(Fault) {
    let a = addr()
    let sz = opSize
    let off = try readMem(eaSeg, a, sz)
    let sel = UInt16(
      truncatingIfNeeded: try readMem(eaSeg, (a &+ UInt64(sz)) & sizeMask(adSize), 2))
    try loadSeg(s, sel)
    setReg(modReg, sz, off)
    if s == SS {
      interruptShadow = true
      stop = true
    }
  }

  /// Checks a code segment descriptor for a far JMP/CALL; returns the parsed segment.
  func checkCodeTarget(_ sel: UInt16) throws(Fault) -> (SegmentRegister, UInt64, UInt64) {
    let err = UInt32(sel & 0xFFFC)
    if sel & 0xFFFC == 0 { throw Fault.gp(0) }
    let (raw, a) = try readDescriptor(sel)
    let d = InterpreterCPU.parseDescriptor(raw, selector: sel)
    // Call gates, task gates and TSS targets are not implemented: #GP (see report).
    if !d.s || d.type & 8 == 0 { throw Fault.gp(err) }
    if d.type & 4 != 0 {
      if Int(d.dpl) > cpl { throw Fault.gp(err) }
    } else {
      if Int(sel & 3) > cpl || Int(d.dpl) != cpl { throw Fault.gp(err) }
    }
    if !d.present { throw Fault.np(err) }
    if longActive && d.l && d.db { throw Fault.gp(err) }
    return (d, raw, a)
  }

  func commitCS(_ d: SegmentRegister, selector: UInt16, newCPL: Int) {
    var n = d
    n.selector = (selector & 0xFFFC) | UInt16(newCPL)
    n.type |= 1
    seg[CS] = n
    cpl = newCPL
    updateMode()
  }

  func maskIP(_ off: UInt64, for d: SegmentRegister) -> UInt64 {
    if longActive && d.l { return off }
    return d.db ? off & 0xFFFF_FFFF : off & 0xFFFF
  }

  func farJump(_ sel: UInt16, _ off: UInt64, _ size: Int) throws(Fault) {
    if !protectedMode || rfl & RFLAGS.vm != 0 {
      seg[CS].selector = sel
      seg[CS].base = UInt64(sel) << 4
      updateMode()
      rip = size == 2 ? off & 0xFFFF : off & 0xFFFF_FFFF
      return
    }
    let (d, raw, a) = try checkCodeTarget(sel)
    let target = maskIP(size == 2 ? off & 0xFFFF : off, for: d)
    if longActive && d.l && !isCanonical(target) { throw Fault.gp(0) }
    try checkCodeLimit(target, d)
    try setAccessed(raw, a)
    commitCS(d, selector: sel, newCPL: cpl)
    rip = target
  }

  func farCall(_ sel: UInt16, _ off: UInt64, _ size: Int) throws(Fault) {
    let ret = nextRIP
    let oldCS = UInt64(seg[CS].selector)
    if !protectedMode || rfl & RFLAGS.vm != 0 {
      let sp0 = r[4]
      do {
        try push(oldCS, size)
        try push(ret, size)
      } catch {
        r[4] = sp0
        throw error
      }
      seg[CS].selector = sel
      seg[CS].base = UInt64(sel) << 4
      updateMode()
      rip = size == 2 ? off & 0xFFFF : off & 0xFFFF_FFFF
      return
    }
    let (d, raw, a) = try checkCodeTarget(sel)
    let target = maskIP(size == 2 ? off & 0xFFFF : off, for: d)
    if longActive && d.l && !isCanonical(target) { throw Fault.gp(0) }
    try checkCodeLimit(target, d)
    let sp0 = r[4]
    do {
      try push(oldCS, size)
      try push(ret, size)
    } catch {
      r[4] = sp0
      throw error
    }
    try setAccessed(raw, a)
    commitCS(d, selector: sel, newCPL: cpl)
    rip = target
  }

  func farReturn(_ size: Int, pop n: UInt64) throws(Fault) {
    let sm = stackMask
    let sp = r[4] & sm
    let ip = try readMem(SS, sp, size)
    let cs = UInt16(truncatingIfNeeded: try readMem(SS, (sp &+ UInt64(size)) & sm, 2))
    if !protectedMode || rfl & RFLAGS.vm != 0 {
      seg[CS].selector = cs
      seg[CS].base = UInt64(cs) << 4
      setSP((sp &+ UInt64(2 * size) &+ n) & sm)
      updateMode()
      rip = size == 2 ? ip & 0xFFFF : ip & 0xFFFF_FFFF
      return
    }
    let (raw, d, a, rpl, _) = try returnCodeSegment(cs)
    let target = maskIP(ip, for: d)
    try checkCodeLimit(target, d)
    if rpl == cpl {
      try setAccessed(raw, a)
      setSP((sp &+ UInt64(2 * size) &+ n) & sm)
      commitCS(d, selector: cs, newCPL: cpl)
      rip = target
      return
    }
    // Return to an outer privilege level: pop SS:eSP too.
    let sp2 = (sp &+ UInt64(2 * size) &+ n) & sm
    let nsp = try readMem(SS, sp2, size)
    let nss = UInt16(truncatingIfNeeded: try readMem(SS, (sp2 &+ UInt64(size)) & sm, 2))
    try setAccessed(raw, a)
    commitCS(d, selector: cs, newCPL: rpl)
    try loadSeg(SS, nss)
    setSP(nsp &+ n)
    rip = target
    nullifyDataSegments()
  }

  /// After a return to an outer level, data segments the new CPL may not use become null.
  func nullifyDataSegments() {
    for s in [ES, DS, FS, GS] {
      let d = seg[s]
      if d.unusable || d.selector & 0xFFFC == 0 { continue }
      let conformingCode = d.type & 0xC == 0xC
      if (!d.s || !conformingCode) && Int(d.dpl) < cpl {
        // Only the selector and the descriptor's validity go, as on hardware
        // and QEMU: a 64-bit FS/GS base (from WRMSR or SWAPGS) stays in use.
        seg[s] = InterpreterCPU.nullSegment(0)
        seg[s].base = d.base
        if !(mode64 && (s == FS || s == GS)) { segBase[s] = 0 }
      }
    }
    refreshSegmentChecks()
  }

  func iret() throws(Fault) {
    // Even if the IRET then faults. A pending NMI is taken at the next
    // instruction boundary, so end the batch (kvm-unit-tests' eventinj).
    if nmiBlocked { stop = true }
    nmiBlocked = false
    let size = opSize
    let sm = stackMask
    let sp = r[4] & sm
    if !protectedMode {
      let ip = try readMem(SS, sp, size)
      let cs = UInt16(truncatingIfNeeded: try readMem(SS, (sp &+ UInt64(size)) & sm, 2))
      let fl = try readMem(SS, (sp &+ UInt64(2 * size)) & sm, size)
      setSP((sp &+ UInt64(3 * size)) & sm)
      seg[CS].selector = cs
      seg[CS].base = UInt64(cs) << 4
      updateMode()
      rip = ip & (size == 2 ? 0xFFFF : 0xFFFF_FFFF)
      let mask: UInt64 = size == 2 ? 0xFFFF : 0x25_7FD5
      flags = (flags & ~mask) | (fl & mask)
      stop = true
      return
    }
    if rfl & RFLAGS.vm != 0 { throw Fault.gp(0) }  // virtual-8086 mode is not implemented
    if rfl & RFLAGS.nt != 0 && !longActive { throw Fault.gp(0) }  // task return not implemented
    let ip = try readMem(SS, sp, size)
    let cs = UInt16(truncatingIfNeeded: try readMem(SS, (sp &+ UInt64(size)) & sm, 2))
    let fl = try readMem(SS, (sp &+ UInt64(2 * size)) & sm, size)
    if fl & RFLAGS.vm != 0 && cpl == 0 && !longActive && size == 4 { throw Fault.gp(0) }
    let (raw, d, a, rpl, err) = try returnCodeSegment(cs)
    if longActive && d.l && d.db { throw Fault.gp(err) }
    let target = maskIP(ip, for: d)
    if longActive && d.l && !isCanonical(target) { throw Fault.gp(0) }
    try checkCodeLimit(target, d)
    // New flags (privilege rules for IF/IOPL).
    var mask: UInt64 =
      RFLAGS.status | RFLAGS.tf | RFLAGS.df | RFLAGS.nt | RFLAGS.rf | RFLAGS.ac | RFLAGS.id
      | RFLAGS.vif | RFLAGS.vip
    if cpl <= iopl { mask |= RFLAGS.if }
    if cpl == 0 { mask |= RFLAGS.iopl }
    if size == 2 { mask &= 0xFFFF }
    let oldCPL = cpl
    let wasIF = rfl & RFLAGS.if
    if rpl > cpl || mode64 {
      let nsp = try readMem(SS, (sp &+ UInt64(3 * size)) & sm, size)
      let nss = UInt16(truncatingIfNeeded: try readMem(SS, (sp &+ UInt64(4 * size)) & sm, 2))
      // Validate the new SS at the new CPL before committing anything.
      let saveCPL = cpl
      let saveSS = seg[SS]
      cpl = rpl
      let csSave = seg[CS]
      seg[CS] = d
      if longActive { updateMode() }
      do {
        try loadSeg(SS, nss)
      } catch {
        cpl = saveCPL
        seg[SS] = saveSS
        seg[CS] = csSave
        updateMode()
        throw error
      }
      try setAccessed(raw, a)
      commitCS(d, selector: cs, newCPL: rpl)
      r[4] =
        stackSize == 8
        ? nsp : (stackSize == 4 ? nsp & 0xFFFF_FFFF : (r[4] & ~0xFFFF) | (nsp & 0xFFFF))
    } else {
      try setAccessed(raw, a)
      setSP((sp &+ UInt64(3 * size)) & sm)
      commitCS(d, selector: cs, newCPL: rpl)
    }
    flags = (flags & ~mask) | (fl & mask)
    rip = target
    if cpl > oldCPL { nullifyDataSegments() }
    if (rfl & RFLAGS.if != 0 && wasIF == 0) || rfl & RFLAGS.tf != 0 { stop = true }
  }

  // MARK: Exceptions and interrupts

  static func contributory(_ v: UInt16) -> Bool { v == 0 || (v >= 10 && v <= 13) }

  /// Fault-class exceptions (SDM table 6-1); #DB is raised here only as a trap.
  static func isFault(_ v: UInt16) -> Bool {
    switch v {
    case 0, 5, 6, 7, 10, 11, 12, 13, 14, 16, 17, 19, 20, 21: return true
    default: return false
    }
  }

  static func vectorName(_ v: UInt16) -> String {
    let names = [
      "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
      "#GP", "#PF", "15", "#MF", "#AC", "#MC", "#XM",
    ]
    return Int(v) < names.count ? names[Int(v)] : "vector \(v)"
  }

  /// Delivers an exception or interrupt, escalating to #DF and triple fault as the SDM requires.
  func raise(
    _ vector: UInt16, _ code: UInt32, _ hasCode: Bool, soft: Bool = false, external: Bool = false,
    icebp: Bool = false
  ) {
    var v = vector
    var c = code
    var hc = hasCode
    var isSoft = soft
    var chain: [UInt16] = []
    if !external { stats.exceptions &+= 1 }
    if !external && !soft && vector < 32 {
      lastException = ExceptionRecord(
        vector: UInt8(vector), errorCode: hasCode ? code : nil, rip: startRIP)
    }
    deliveries &+= 1
    halted = false
    // ICEBP's #DB after a MOV SS carries the data breakpoints the MOV SS deferred.
    if icebp { drDeferredHits = 0 }
    for _ in 0..<6 {
      chain.append(v)
      do {
        try deliver(v, c, hc, soft: isSoft && !icebp, external: external)
        stop = true  // re-check interrupts / mode at the batch boundary
        return
      } catch {
        if error.vector == Fault.exitVector {
          deliveryInterrupted(vector: v, external: external, soft: isSoft)
          stop = true
          return
        }
        let second = error.vector
        // A fault while delivering INT n/INT3/INTO reports the INT instruction itself.
        if isSoft { rip = startRIP }
        if v == 8 {
          chain.append(second)
          break
        }
        if (InterpreterCPU.contributory(v) && InterpreterCPU.contributory(second))
          || (v == 14 && (InterpreterCPU.contributory(second) || second == 14))
        {
          v = 8
          c = 0
          hc = true
        } else {
          v = second
          c = error.code
          hc = error.hasCode
        }
        isSoft = false
      }
    }
    let names = chain.map { InterpreterCPU.vectorName($0) }.joined(separator: " -> ")
    exit(
      .shutdown(
        reason: "triple fault (" + names + ") at RIP 0x" + String(startRIP, radix: 16)))
  }

  func deliver(_ v: UInt16, _ code: UInt32, _ hasCode: Bool, soft: Bool, external: Bool)
    throws(Fault)
  {
    let ext: UInt32 = external ? 1 : 0
    if !protectedMode {
      // Real mode: IVT.
      let off = UInt64(v) * 4
      if off + 3 > UInt64(idtr.limit) { throw Fault.gp(0) }
      let ent = try readSys(idtr.base &+ off, 4)
      let fl = flags
      let sp0 = r[4]
      do {
        try push(fl & 0xFFFF, 2)
        try push(UInt64(seg[CS].selector), 2)
        try push(rip & 0xFFFF, 2)
      } catch {
        r[4] = sp0
        throw error
      }
      rfl &= ~(RFLAGS.if | RFLAGS.tf | RFLAGS.ac | RFLAGS.rf)
      let sel = UInt16(truncatingIfNeeded: ent >> 16)
      seg[CS].selector = sel
      seg[CS].base = UInt64(sel) << 4
      updateMode()
      rip = ent & 0xFFFF
      return
    }
    let idtErr = UInt32(v) * 8 + 2 + ext
    let entSize: UInt64 = longActive ? 16 : 8
    let off = UInt64(v) * entSize
    if off + entSize - 1 > UInt64(idtr.limit) { throw Fault.gp(idtErr) }
    let lo = try readSys(idtr.base &+ off, 8)
    let hi = longActive ? try readSys(idtr.base &+ off &+ 8, 8) : 0
    let gtype = (lo >> 40) & 0xF
    let gdpl = Int((lo >> 45) & 3)
    if longActive {
      if gtype != 0xE && gtype != 0xF || lo & (1 << 44) != 0 { throw Fault.gp(idtErr) }
    } else if ![0x6, 0x7, 0xE, 0xF].contains(gtype) || lo & (1 << 44) != 0 {
      // Task gates (0x5) are not implemented.
      throw Fault.gp(idtErr)
    }
    if soft && gdpl < cpl { throw Fault.gp(idtErr) }
    if lo & (1 << 47) == 0 { throw Fault.np(idtErr) }
    let sel = UInt16(truncatingIfNeeded: lo >> 16)
    var target = (lo & 0xFFFF) | ((lo >> 32) & 0xFFFF_0000)
    if longActive { target |= hi << 32 }
    if sel & 0xFFFC == 0 { throw Fault.gp(ext) }
    let selErr = UInt32(sel & 0xFFFC) | ext
    let da: UInt64
    do { da = try descriptorAddress(sel) } catch { throw Fault.gp(selErr) }
    let raw = try readSys(da, 8)
    let d = InterpreterCPU.parseDescriptor(raw, selector: sel)
    if !d.s || d.type & 8 == 0 || Int(d.dpl) > cpl { throw Fault.gp(selErr) }
    if !d.present { throw Fault.np(selErr) }
    let newCPL = d.type & 4 != 0 ? cpl : Int(d.dpl)
    try checkCodeLimit(target, d)
    let isInterruptGate = gtype & 1 == 0
    // Faults push RF set, so the handler's IRET does not re-trigger an instruction breakpoint.
    let fl = flags | (!external && !soft && InterpreterCPU.isFault(v) ? RFLAGS.rf : 0)
    let oldCS = UInt64(seg[CS].selector)
    let oldSS = UInt64(seg[SS].selector)
    let oldRSP = r[4]
    let user = newCPL == 3

    if longActive {
      if !d.l || d.db { throw Fault.gp(selErr) }
      let ist = Int((lo >> 32) & 7)
      var nsp: UInt64
      if ist != 0 {
        nsp = try readSys(tr.base &+ 0x24 &+ UInt64(ist - 1) * 8, 8)
      } else if newCPL < cpl {
        nsp = try readSys(tr.base &+ 4 &+ UInt64(newCPL) * 8, 8)
      } else {
        nsp = oldRSP
      }
      nsp &= ~0xF
      var frame: [UInt64] = [oldSS, oldRSP, fl, oldCS, rip]
      if hasCode { frame.append(UInt64(code)) }
      for val in frame {
        nsp &-= 8
        if !isCanonical(nsp) { throw Fault.ss(0) }
        try writeAs(nsp, 8, val, user: user)
      }
      if newCPL < cpl {
        var nss = InterpreterCPU.nullSegment(UInt16(newCPL))
        nss.dpl = UInt8(newCPL)
        seg[SS] = nss
      }
      commitCS(d, selector: sel, newCPL: newCPL)
      r[4] = nsp
      rip = target
    } else {
      let gate32 = gtype & 8 != 0
      let psize = gate32 ? 4 : 2
      var frame: [UInt64] = []
      var nss = seg[SS]
      var nsp: UInt64
      var nStack = stackSize
      if newCPL < cpl {
        // Stack switch: SSn:ESPn from the 32-bit TSS.
        let tssOff = UInt64(newCPL) * 8
        if tssOff + 11 > UInt64(tr.limit) { throw Fault.ts(UInt32(tr.selector & 0xFFFC) | ext) }
        nsp = try readSys(tr.base &+ 4 &+ tssOff, 4)
        let ssSel = UInt16(truncatingIfNeeded: try readSys(tr.base &+ 8 &+ tssOff, 2))
        let ssErr = UInt32(ssSel & 0xFFFC) | ext
        if ssSel & 0xFFFC == 0 { throw Fault.ts(ext) }
        let sa: UInt64
        do { sa = try descriptorAddress(ssSel) } catch { throw Fault.ts(ssErr) }
        let sraw = try readSys(sa, 8)
        nss = InterpreterCPU.parseDescriptor(sraw, selector: ssSel)
        if Int(ssSel & 3) != newCPL || Int(nss.dpl) != newCPL || !nss.s || nss.type & 0xA != 0x2 {
          throw Fault.ts(ssErr)
        }
        if !nss.present { throw Fault.ss(ssErr) }
        nStack = nss.db ? 4 : 2
        frame = [oldSS, oldRSP]
      } else {
        nsp = oldRSP
      }
      frame += [fl, oldCS, rip]
      if hasCode { frame.append(UInt64(code)) }
      let smask: UInt64 = nStack == 4 ? 0xFFFF_FFFF : 0xFFFF
      var sp = nsp & smask
      for val in frame {
        sp = (sp &- UInt64(psize)) & smask
        try writeAs((nss.base &+ sp) & 0xFFFF_FFFF, psize, val, user: user)
      }
      if newCPL < cpl {
        nss.type |= 1
        seg[SS] = nss
      }
      commitCS(d, selector: sel, newCPL: newCPL)
      r[4] = nStack == 4 ? sp : (nsp & ~0xFFFF) | sp
      rip = gate32 ? target : target & 0xFFFF
    }
    rfl &= ~(RFLAGS.tf | RFLAGS.nt | RFLAGS.rf | RFLAGS.vm)
    if isInterruptGate { rfl &= ~RFLAGS.if }
  }

  // MARK: Control registers

  func readCR(_ n: Int) throws(Fault) -> UInt64 {
    switch n {
    case 0: return cr0
    case 2: return cr2
    case 3: return cr3
    case 4: return cr4
    case 8:
      if let t = platform?.taskPriorityClass { return UInt64(t) }
      return cr8 & 0xF
    default: throw Fault.ud()
    }
  }

  func writeCR(_ n: Int, _ value: UInt64) throws(Fault) {
    switch n {
    case 0:
      var v = value | CR0.et
      if v >> 32 != 0 { throw Fault.gp(0) }
      if v & CR0.pg != 0 && v & CR0.pe == 0 { throw Fault.gp(0) }
      if v & CR0.nw != 0 && v & CR0.cd == 0 { throw Fault.gp(0) }
      let enablingPG = v & CR0.pg != 0 && cr0 & CR0.pg == 0
      if enablingPG && efer & EFER.lme != 0 {
        if cr4 & CR4.pae == 0 { throw Fault.gp(0) }
      }
      if mode64 && v & CR0.pg == 0 { throw Fault.gp(0) }
      try checkCR0Write(v)
      v &= 0xE005_003F
      let changed = cr0 ^ v
      cr0 = v
      if v & CR0.pg != 0 && efer & EFER.lme != 0 {
        efer |= EFER.lma
      } else if v & CR0.pg == 0 {
        efer &= ~EFER.lma
      }
      if changed & (CR0.pg | CR0.wp | CR0.pe) != 0 { flushTLB(keepGlobal: false) }
      updateMode()
      stop = true
    case 2: cr2 = value
    case 3:
      try checkCR3Write(value)
      cr3 = longActive ? value & 0x000F_FFFF_FFFF_FFFF : value & 0xFFFF_FFFF
      stats.cr3Loads &+= 1
      flushTLB(keepGlobal: true)
    case 4:
      // Reserved bits and features the CPUID policy does not offer.
      var allowed: UInt64 =
        CR4.vme | CR4.pvi | CR4.tsd | CR4.de | CR4.pse | CR4.pae | CR4.mce | CR4.pge | CR4.pce
        | CR4.osfxsr | CR4.osxmmexcpt
      if hasXSAVE { allowed |= CR4.osxsave }
      if hasFSGSBASE { allowed |= CR4.fsgsbase }
      let f7 = cpuid.lookup(leaf: 7, subleaf: 0)
      if f7.ebx & (1 << 7) != 0 { allowed |= CR4.smep }
      if f7.ebx & (1 << 20) != 0 { allowed |= CR4.smap }
      if f7.ecx & (1 << 2) != 0 { allowed |= CR4.umip }
      if value & ~allowed != 0 { throw Fault.gp(0) }
      if longActive && value & CR4.pae == 0 { throw Fault.gp(0) }
      let changed = cr4 ^ value
      cr4 = value
      if changed & (CR4.pge | CR4.pae | CR4.pse | CR4.smep | CR4.smap | CR4.pcide) != 0 {
        flushTLB(keepGlobal: false)
      }
    case 8:
      if value >> 4 != 0 { throw Fault.gp(0) }
      cr8 = value
      platform?.setTaskPriorityClass(UInt8(value))
    default:
      throw Fault.ud()
    }
  }

  // MARK: MSRs

  func readMSR(_ idx: UInt32) throws(Fault) -> UInt64 {
    if let platform, let v = platform.readMSR(idx) { return v }
    switch idx {
    case MSR.efer: return efer
    case MSR.star: return star
    case MSR.lstar: return lstar
    case MSR.cstar: return cstar
    case MSR.fmask: return fmask
    case MSR.fsBase: return seg[FS].base
    case MSR.gsBase: return seg[GS].base
    case MSR.kernelGSBase: return kernelGSBase
    case MSR.tscAux: return tscAux
    case MSR.tsc: return readTSC()
    case MSR.apicBase: return apicBase
    case MSR.pat: return pat
    case MSR.tscDeadline: return tscDeadline
    case MSR.miscEnable: return miscEnable
    case MSR.sysenterCS: return sysenterCS
    case MSR.sysenterESP: return sysenterESP
    case MSR.sysenterEIP: return sysenterEIP
    case MSR.mtrrCap: return 0x508  // 8 variable ranges, fixed ranges, WC
    case MSR.mtrrDefType: return mtrrDefType
    case 0x200...0x20F, 0x250, 0x258, 0x259, 0x268...0x26F: return mtrrs[idx] ?? 0
    case MSR.mcgCap: return 0
    case MSR.mcgStatus: return mcgStatus
    case MSR.specCtrl where hasSpecCtrl: return specCtrl
    case MSR.platformID, MSR.biosSignID, MSR.featureControl, MSR.tscAdjust: return kvmMSRs[idx] ?? 0
    case MSR.archCapabilities: return 0
    // AMD K8 interrupt-pending message (Linux reads it for the E400 C1E erratum on family 0xF).
    case 0xC001_0055: return 0
    // AMD SYSCFG: no TOM2, MTRR fixed-range DRAM bits clear (Linux reads it with the MTRRs).
    case 0xC001_0010: return 0
    case MSR.kvmWallClockNew, MSR.kvmSystemTimeNew: return kvmMSRs[idx] ?? 0
    case InterpreterCPU.amdCounterMSRs where hasAMDLegacyCounters: return kvmMSRs[idx] ?? 0
    default: throw Fault.gp(0)
    }
  }

  /// AMD's legacy event selects (0-3) and counters (4-7), which every AMD CPU has.
  static let amdCounterMSRs: ClosedRange<UInt32> = 0xC001_0000...0xC001_0007

  /// RDPMC: #GP(0) outside CPL 0 without CR4.PCE, and for a counter this CPU lacks.
  /// No counter counts here: an existing one reads what was last written to it (0 on Intel).
  func rdpmc() throws(Fault) {
    if protectedMode && cpl != 0 && cr4 & CR4.pce == 0 { throw Fault.gp(0) }
    let i = UInt32(truncatingIfNeeded: r[1])
    if i >= performanceCounters { throw Fault.gp(0) }
    let v =
      hasAMDLegacyCounters ? kvmMSRs[InterpreterCPU.amdCounterMSRs.lowerBound + 4 + i] ?? 0 : 0
    r[0] = v & 0xFFFF_FFFF
    r[2] = v >> 32
  }

  func writeMSR(_ idx: UInt32, _ v: UInt64) throws(Fault) {
    if let platform {
      if idx == MSR.tsc {
        platform.writeTSC(v)
        return
      }
      if platform.writeMSR(idx, value: v) { return }
    }
    switch idx {
    case MSR.efer:
      var allowed: UInt64 = EFER.sce | EFER.lme | EFER.lma
      if hasNX { allowed |= EFER.nxe }
      if v & ~allowed != 0 { throw Fault.gp(0) }
      if cr0 & CR0.pg != 0 && (v ^ efer) & EFER.lme != 0 { throw Fault.gp(0) }
      let old = efer
      efer = (v & ~EFER.lma) | (efer & EFER.lma)
      if (old ^ efer) & EFER.nxe != 0 { flushTLB(keepGlobal: false) }
      updateMode()
    case MSR.star: star = v
    case MSR.lstar:
      if !isCanonical(v) { throw Fault.gp(0) }
      lstar = v
    case MSR.cstar:
      if !isCanonical(v) { throw Fault.gp(0) }
      cstar = v
    case MSR.fmask: fmask = v & 0xFFFF_FFFF
    case MSR.fsBase:
      if !isCanonical(v) { throw Fault.gp(0) }
      seg[FS].base = v
      segBase[FS] = mode64 ? v : v & 0xFFFF_FFFF
    case MSR.gsBase:
      if !isCanonical(v) { throw Fault.gp(0) }
      seg[GS].base = v
      segBase[GS] = mode64 ? v : v & 0xFFFF_FFFF
    case MSR.kernelGSBase:
      if !isCanonical(v) { throw Fault.gp(0) }
      kernelGSBase = v
    case MSR.tscAux: tscAux = v & 0xFFFF_FFFF
    case MSR.tsc: tscOffset = v &- (readTSC() &- tscOffset)
    case MSR.apicBase: apicBase = v
    case MSR.pat: pat = v
    case MSR.tscDeadline: tscDeadline = v
    case MSR.miscEnable: miscEnable = v
    case MSR.sysenterCS: sysenterCS = v & 0xFFFF
    case MSR.sysenterESP: sysenterESP = v
    case MSR.sysenterEIP: sysenterEIP = v
    case MSR.mtrrDefType: mtrrDefType = v
    case 0x200...0x20F, 0x250, 0x258, 0x259, 0x268...0x26F: mtrrs[idx] = v
    case MSR.mcgStatus: mcgStatus = v
    // Only when CPUID offers them; reserved bits #GP (IBRS, STIBP, SSBD / IBPB).
    case MSR.specCtrl where hasSpecCtrl && v & ~7 == 0: specCtrl = v
    case MSR.predCmd where hasPredCmd && v & ~1 == 0: break
    case MSR.featureControl, MSR.tscAdjust, MSR.biosSignID: kvmMSRs[idx] = v
    case MSR.kvmWallClockNew, MSR.kvmSystemTimeNew: kvmMSRs[idx] = v
    // Counters are 48 bits wide; nothing counts, so they hold what was written.
    case InterpreterCPU.amdCounterMSRs where hasAMDLegacyCounters:
      kvmMSRs[idx] = idx >= InterpreterCPU.amdCounterMSRs.lowerBound + 4 ? v & 0xFFFF_FFFF_FFFF : v
    default: throw Fault.gp(0)
    }
  }

  // MARK: Fast system calls

  func flatSegment(selector: UInt16, code: Bool, dpl: Int, long: Bool) -> SegmentRegister {
    var d = SegmentRegister()
    d.selector = selector
    d.base = 0
    d.limit = 0xFFFF_FFFF
    d.type = code ? 0xB : 0x3
    d.s = true
    d.dpl = UInt8(dpl)
    d.present = true
    d.l = code && long
    d.db = !(code && long)
    d.g = true
    d.unusable = false
    return d
  }

  func syscall() throws(Fault) {
    if efer & EFER.sce == 0 { throw Fault.ud() }
    let next = nextRIP
    let csSel = UInt16(truncatingIfNeeded: star >> 32) & 0xFFFC
    if longActive {
      r[1] = next
      r[11] = flags & ~RFLAGS.rf
      seg[CS] = flatSegment(selector: csSel, code: true, dpl: 0, long: true)
      seg[SS] = flatSegment(selector: csSel &+ 8, code: false, dpl: 0, long: false)
      cpl = 0
      let target = mode64 ? lstar : cstar
      flags = flags & ~(fmask | RFLAGS.rf)
      updateMode()
      rip = target
    } else {
      r[1] = next & 0xFFFF_FFFF
      seg[CS] = flatSegment(selector: csSel, code: true, dpl: 0, long: false)
      seg[SS] = flatSegment(selector: csSel &+ 8, code: false, dpl: 0, long: false)
      cpl = 0
      rfl &= ~(RFLAGS.if | RFLAGS.vm | RFLAGS.rf)
      updateMode()
      rip = star & 0xFFFF_FFFF
    }
    endFastSystemCall()
  }

  /// Single-step after SYSCALL/SYSRET follows the TF they leave (see `stepOnNewTF`).
  private func endFastSystemCall() {
    stepOnNewTF = true
    if rfl & RFLAGS.tf != 0 { stop = true }
  }

  func sysret() throws(Fault) {
    if efer & EFER.sce == 0 { throw Fault.ud() }
    if cpl != 0 || !protectedMode { throw Fault.gp(0) }
    let base = UInt16(truncatingIfNeeded: star >> 48)
    if longActive {
      let to64 = opSize == 8
      let target = to64 ? r[1] : r[1] & 0xFFFF_FFFF
      if to64 && !isCanonical(target) { throw Fault.gp(0) }
      let csSel = (to64 ? base &+ 16 : base) | 3
      seg[CS] = flatSegment(selector: csSel, code: true, dpl: 3, long: to64)
      seg[SS] = flatSegment(selector: (base &+ 8) | 3, code: false, dpl: 3, long: false)
      cpl = 3
      flags = (r[11] & 0x3C_7FD7) | 2
      updateMode()
      rip = target
    } else {
      seg[CS] = flatSegment(selector: base | 3, code: true, dpl: 3, long: false)
      seg[SS] = flatSegment(selector: (base &+ 8) | 3, code: false, dpl: 3, long: false)
      cpl = 3
      rfl |= RFLAGS.if
      updateMode()
      rip = r[1] & 0xFFFF_FFFF
    }
    endFastSystemCall()
  }

  func sysenter() throws(Fault) {
    if !protectedMode || sysenterCS & 0xFFFC == 0 { throw Fault.gp(0) }
    let sel = UInt16(truncatingIfNeeded: sysenterCS) & 0xFFFC
    seg[CS] = flatSegment(selector: sel, code: true, dpl: 0, long: longActive)
    seg[SS] = flatSegment(selector: sel &+ 8, code: false, dpl: 0, long: false)
    cpl = 0
    rfl &= ~(RFLAGS.if | RFLAGS.vm | RFLAGS.rf)
    updateMode()
    rip = longActive ? sysenterEIP : sysenterEIP & 0xFFFF_FFFF
    r[4] = longActive ? sysenterESP : sysenterESP & 0xFFFF_FFFF
  }

  func sysexit() throws(Fault) {
    if !protectedMode || cpl != 0 || sysenterCS & 0xFFFC == 0 { throw Fault.gp(0) }
    let base = UInt16(truncatingIfNeeded: sysenterCS)
    let to64 = opSize == 8
    let csSel = (to64 ? base &+ 32 : base &+ 16) | 3
    let ssSel = (to64 ? base &+ 40 : base &+ 24) | 3
    seg[CS] = flatSegment(selector: csSel, code: true, dpl: 3, long: to64)
    seg[SS] = flatSegment(selector: ssSel, code: false, dpl: 3, long: false)
    cpl = 3
    updateMode()
    rip = to64 ? r[2] : r[2] & 0xFFFF_FFFF
    r[4] = to64 ? r[1] : r[1] & 0xFFFF_FFFF
  }
}
