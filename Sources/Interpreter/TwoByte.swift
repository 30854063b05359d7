import Engine
import X86

extension InterpreterCPU {
  @inline(__always) func requireCPL0() throws(Fault) {
    if cpl != 0 { throw Fault.gp(0) }
  }

  /// The 0F-prefixed opcode map. Sets RIP itself.
  func exec0F() throws(Fault) {
    let b = try fetch8()
    switch b {
    case 0x00:
      try decodeModRM()
      try group6()
    case 0x01:
      try decodeModRM()
      if try group7() { return }
    case 0x02, 0x03:
      try decodeModRM()
      try larLsl(lsl: b == 0x03)
    case 0x05:
      if !mode64 && !longActive && cpuid.lookup(leaf: 0x8000_0001, subleaf: 0).edx & (1 << 11) == 0
      {
        throw Fault.ud()
      }
      try syscall()
      return
    case 0x06:
      try requireCPL0()
      cr0 &= ~CR0.ts
    case 0x07:
      try sysret()
      return
    case 0x08, 0x09:
      try requireCPL0()
    case 0x0B:
      throw Fault.ud()
    case 0x0D:
      // PREFETCH/PREFETCHW: decode the operand, no access.
      try decodeModRM()
      if modIsReg { throw Fault.ud() }
    case 0x18...0x1F:
      // Hint NOPs (PREFETCHh, NOP Ev, ENDBR...).
      try decodeModRM()
    case 0x20, 0x22:
      try decodeRegisterModRM()
      try requireCPL0()
      let n = modReg
      let s = mode64 ? 8 : 4
      if b == 0x20 {
        setReg(modRM, s, try readCR(n))
      } else {
        try writeCR(n, getReg(modRM, s))
      }
    case 0x21, 0x23:
      try decodeRegisterModRM()
      try requireCPL0()
      var n = modReg & 7
      if modReg > 7 { throw Fault.ud() }
      if n == 4 || n == 5 {
        if cr4 & CR4.de != 0 { throw Fault.ud() }
        n += 2
      }
      try checkGeneralDetect()
      let s = mode64 ? 8 : 4
      if b == 0x21 {
        var v = dr[n]
        if n == 6 { v |= 0xFFFF_0FF0 }
        if n == 7 { v |= 0x400 }
        setReg(modRM, s, v)
      } else {
        let v = getReg(modRM, s)
        if (n == 6 || n == 7) && v >> 32 != 0 { throw Fault.gp(0) }
        dr[n] = v
        // RF lasts one instruction; one left by an IRET long ago must not hide
        // the breakpoint just set (the run loop clears it only while DR7 is on).
        rfl &= ~RFLAGS.rf
        if n != 6 {
          debugRegistersChanged()
          stop = true  // DR7 may call for the one-at-a-time batch
        }
      }
    case 0x30:
      try requireCPL0()
      try writeMSR(UInt32(truncatingIfNeeded: r[1]), (r[2] << 32) | (r[0] & 0xFFFF_FFFF))
      stop = true
    case 0x31:
      if cr4 & CR4.tsd != 0 && cpl != 0 { throw Fault.gp(0) }
      let t = readTSC()
      r[0] = t & 0xFFFF_FFFF
      r[2] = t >> 32
    case 0x33: try rdpmc()
    case 0x32:
      try requireCPL0()
      let v = try readMSR(UInt32(truncatingIfNeeded: r[1]))
      r[0] = v & 0xFFFF_FFFF
      r[2] = v >> 32
    case 0x34:
      try sysenter()
      return
    case 0x35:
      try sysexit()
      return
    case 0xA0, 0xA8:
      let s = stackOpSize
      try push(UInt64(seg[b == 0xA0 ? FS : GS].selector), s)
    case 0xA1, 0xA9:
      let s = stackOpSize
      let sp0 = r[4]
      let v = try pop(s)
      do { try loadSeg(b == 0xA1 ? FS : GS, UInt16(truncatingIfNeeded: v)) } catch {
        r[4] = sp0
        throw error
      }
    case 0xA2:
      let res = cpuidQuery(UInt32(truncatingIfNeeded: r[0]), UInt32(truncatingIfNeeded: r[1]))
      r[0] = UInt64(res.eax)
      r[3] = UInt64(res.ebx)
      r[1] = UInt64(res.ecx)
      r[2] = UInt64(res.edx)
    case 0xA3, 0xAB, 0xB3, 0xBB:
      try decodeModRM()
      try bitOp(Int((b >> 3) & 3), fromReg: true)
    case 0xBA:
      try decodeModRM()
      let op = modReg & 7
      if op < 4 { throw Fault.ud() }
      try bitOp(op - 4, fromReg: false)
    case 0xA4, 0xA5, 0xAC, 0xAD:
      try decodeModRM()
      let s = opSize
      let c = b & 1 == 0 ? UInt64(try fetch8()) : r[1] & 0xFF
      let v = try readE(s)
      try writeE(s, shiftDouble(v, getReg(modReg, s), c, s, left: b < 0xA8))
    case 0xAE:
      try decodeModRM()
      try group15()
    case 0xB2, 0xB4, 0xB5:
      try decodeModRM()
      if modIsReg { throw Fault.ud() }
      try loadFarPointer(b == 0xB2 ? SS : (b == 0xB4 ? FS : GS))
    case 0xB8:
      if rep != 0xF3 || !hasPOPCNT { throw Fault.ud() }
      try decodeModRM()
      let s = opSize
      let v = try readE(s)
      let n = UInt64(v.nonzeroBitCount)
      setReg(modReg, s, n)
      setStatus(v == 0 ? RFLAGS.zf : 0)
    case 0xBC, 0xBD:
      try decodeModRM()
      let s = opSize
      let v = try readE(s)
      let bits = s * 8
      if rep == 0xF3 && ((b == 0xBC && hasBMI1) || (b == 0xBD && hasLZCNT)) {
        // TZCNT / LZCNT
        let n: Int
        if b == 0xBC {
          n = v == 0 ? bits : v.trailingZeroBitCount
        } else {
          n = v == 0 ? bits : v.leadingZeroBitCount - (64 - bits)
        }
        setReg(modReg, s, UInt64(n))
        var f = statusFlags() & ~(RFLAGS.cf | RFLAGS.zf)
        if v == 0 { f |= RFLAGS.cf }
        if n == 0 { f |= RFLAGS.zf }
        setStatus(f)
      } else if v == 0 {
        setStatus(RFLAGS.zf, mask: RFLAGS.zf)
      } else {
        let n = b == 0xBC ? v.trailingZeroBitCount : 63 - v.leadingZeroBitCount
        setReg(modReg, s, UInt64(n))
        setStatus(0, mask: RFLAGS.zf)
      }
    case 0xC7:
      try decodeModRM()
      try group9()
    case 0xC8...0xCF:
      let i = Int(b & 7) | (Int(rex & 1) << 3)
      switch opSize {
      case 8: r[i] = r[i].byteSwapped
      case 4: r[i] = UInt64(UInt32(truncatingIfNeeded: r[i]).byteSwapped)
      default: setReg(i, 2, 0)  // undefined for 16-bit; hardware gives 0
      }
    case 0x38:
      try exec0F38()  // ThreeByte.swift
    case 0x3A:
      try exec0F3A()
    case 0xFF:
      throw Fault.ud()  // UD0
    default:
      if try !execSSE(b) { throw Fault.ud() }  // SSE/SSE2/MMX: SSE.swift
    }
    rip = (startRIP &+ UInt64(ipos)) & codeMask
  }

  func cpuidQuery(_ leaf: UInt32, _ sub: UInt32) -> CPUIDResult {
    var res = cpuid.lookup(leaf: leaf, subleaf: sub).forCPU(leaf: leaf, apicID: UInt32(apicID))
    if leaf == 1 {
      // OSXSAVE mirrors CR4.
      if cr4 & CR4.osxsave != 0 { res.ecx |= 1 << 27 } else { res.ecx &= ~(1 << 27) }
      // The APIC bit follows IA32_APIC_BASE's global enable (SDM 10.4.3).
      if (platform?.readMSR(MSR.apicBase) ?? apicBase) & (1 << 11) == 0 { res.edx &= ~(1 << 9) }
    }
    return res
  }

  /// BT/BTS/BTR/BTC (op 0..3) with register or immediate bit offset.
  func bitOp(_ op: Int, fromReg: Bool) throws(Fault) {
    let s = opSize
    let bits = UInt64(s * 8)
    var bit: UInt64
    var v: UInt64
    var memAddr: UInt64 = 0
    if fromReg {
      let off = getReg(modReg, s)
      if modIsReg {
        bit = off & (bits - 1)
        v = getReg(modRM, s)
      } else {
        // Memory: the signed bit offset can reach outside the operand.
        let soff = Int64(bitPattern: sext(off, s))
        let elem = soff >> Int64(s == 8 ? 6 : s == 4 ? 5 : 4)
        memAddr = (addr() &+ UInt64(bitPattern: elem &* Int64(s))) & sizeMask(adSize)
        bit = off & (bits - 1)
        v = try readMem(eaSeg, memAddr, s)
      }
    } else {
      bit = UInt64(try fetch8()) & (bits - 1)
      if modIsReg {
        v = getReg(modRM, s)
      } else {
        memAddr = addr()
        v = try readMem(eaSeg, memAddr, s)
      }
    }
    let old = (v >> bit) & 1
    setStatus(old, mask: RFLAGS.cf)
    if op == 0 { return }
    let m: UInt64 = 1 << bit
    let nv: UInt64
    switch op {
    case 1: nv = v | m
    case 2: nv = v & ~m
    default: nv = v ^ m
    }
    if modIsReg { setReg(modRM, s, nv) } else { try writeMem(eaSeg, memAddr, s, nv) }
  }

  func group6() throws(Fault) {
    let op = modReg & 7
    if !protectedMode || rfl & RFLAGS.vm != 0 { throw Fault.ud() }
    switch op {
    case 0, 1:  // SLDT / STR
      if cr4 & CR4.umip != 0 && cpl > 0 { throw Fault.gp(0) }
      let v = UInt64(op == 0 ? ldtr.selector : tr.selector)
      if modIsReg { setReg(modRM, opSize, v) } else { try writeE(2, v) }
    case 2, 3:  // LLDT / LTR
      try requireCPL0()
      let sel = UInt16(truncatingIfNeeded: try readE(2))
      let err = UInt32(sel & 0xFFFC)
      if sel & 0xFFFC == 0 {
        if op == 3 { throw Fault.gp(0) }
        ldtr = InterpreterCPU.nullSegment(sel)
        return
      }
      if sel & 4 != 0 { throw Fault.gp(err) }
      let a = try descriptorAddress(sel, size: longActive ? 16 : 8)
      let raw = try readSys(a, 8)
      var d = InterpreterCPU.parseDescriptor(raw, selector: sel)
      if longActive { d.base |= (try readSys(a &+ 8, 8) & 0xFFFF_FFFF) << 32 }
      // In long mode a non-canonical base is refused (SDM LLDT/LTR, la57 test).
      let canonical = !longActive || isCanonical(d.base)
      if op == 2 {
        if d.s || d.type != 2 { throw Fault.gp(err) }
        if !d.present { throw Fault.np(err) }
        if !canonical { throw Fault.gp(err) }
        ldtr = d
      } else {
        if d.s || (d.type != 9 && d.type != 1) { throw Fault.gp(err) }
        if !d.present { throw Fault.np(err) }
        if !canonical { throw Fault.gp(err) }
        try writeSys(a, 8, raw | (2 << 40))  // mark busy
        d.type |= 2
        tr = d
      }
    case 4, 5:  // VERR / VERW
      let sel = UInt16(truncatingIfNeeded: try readE(2))
      var ok = false
      if sel & 0xFFFC != 0, let a = try? descriptorAddress(sel) {
        let d = InterpreterCPU.parseDescriptor(try readSys(a, 8), selector: sel)
        let conforming = d.type & 0xC == 0xC
        let privOK = conforming || Int(d.dpl) >= max(cpl, Int(sel & 3))
        if d.s && privOK {
          if op == 4 { ok = d.type & 8 == 0 || d.type & 2 != 0 } else { ok = d.type & 0xA == 0x2 }
        }
      }
      setStatus(ok ? RFLAGS.zf : 0, mask: RFLAGS.zf)
    default:
      throw Fault.ud()
    }
  }

  func larLsl(lsl: Bool) throws(Fault) {
    if !protectedMode || rfl & RFLAGS.vm != 0 { throw Fault.ud() }
    let sel = UInt16(truncatingIfNeeded: try readE(2))
    var ok = false
    var result: UInt64 = 0
    if sel & 0xFFFC != 0, let a = try? descriptorAddress(sel) {
      let raw = try readSys(a, 8)
      let d = InterpreterCPU.parseDescriptor(raw, selector: sel)
      let conforming = d.s && d.type & 0xC == 0xC
      let privOK = conforming || Int(d.dpl) >= max(cpl, Int(sel & 3))
      var typeOK = d.s
      if !d.s {
        let allowed: [UInt8] =
          longActive
          ? (lsl ? [2, 9, 0xB] : [2, 9, 0xB, 0xC])
          : (lsl ? [1, 2, 3, 9, 0xB] : [1, 2, 3, 4, 5, 9, 0xB, 0xC])
        typeOK = allowed.contains(d.type)
      }
      if typeOK && privOK {
        ok = true
        result = lsl ? UInt64(d.limit) : (raw >> 32) & 0x00F0_FF00
      }
    }
    if ok { setReg(modReg, opSize, result) }
    setStatus(ok ? RFLAGS.zf : 0, mask: RFLAGS.zf)
  }

  /// Returns true when it set RIP itself.
  func group7() throws(Fault) -> Bool {
    let op = modReg & 7
    if modIsReg {
      let full = 0xC0 | (op << 3) | (modRM & 7)
      switch full {
      case 0xC1:  // VMCALL
        rip = nextRIP
        exit(hypercallExit())
        return true
      case 0xD9:  // VMMCALL
        rip = nextRIP
        exit(hypercallExit())
        return true
      case 0xD0:  // XGETBV
        if !hasXSAVE || cr4 & CR4.osxsave == 0 { throw Fault.ud() }
        if r[1] & 0xFFFF_FFFF != 0 { throw Fault.gp(0) }
        r[0] = xcr0 & 0xFFFF_FFFF
        r[2] = xcr0 >> 32
      case 0xD1:  // XSETBV
        if !hasXSAVE || cr4 & CR4.osxsave == 0 { throw Fault.ud() }
        try requireCPL0()
        let v = (r[2] << 32) | (r[0] & 0xFFFF_FFFF)
        if r[1] & 0xFFFF_FFFF != 0 || v & 1 == 0 || v & ~UInt64(3) != 0 { throw Fault.gp(0) }
        xcr0 = v
      case 0xF8:  // SWAPGS
        if !mode64 { throw Fault.ud() }
        try requireCPL0()
        let t = seg[GS].base
        seg[GS].base = kernelGSBase
        kernelGSBase = t
        segBase[GS] = seg[GS].base
      case 0xF9:  // RDTSCP
        if !hasRDTSCP { throw Fault.ud() }
        if cr4 & CR4.tsd != 0 && cpl != 0 { throw Fault.gp(0) }
        let t = readTSC()
        r[0] = t & 0xFFFF_FFFF
        r[2] = t >> 32
        r[1] = tscAux & 0xFFFF_FFFF
      case 0xCA, 0xCB:  // CLAC / STAC
        if cpuid.lookup(leaf: 7, subleaf: 0).ebx & (1 << 20) == 0 { throw Fault.ud() }
        try requireCPL0()
        if full == 0xCA { rfl &= ~RFLAGS.ac } else { rfl |= RFLAGS.ac }
      case 0xE0...0xE7:  // SMSW reg
        if cr4 & CR4.umip != 0 && cpl > 0 { throw Fault.gp(0) }
        setReg(modRM, opSize, cr0 & (opSize == 2 ? 0xFFFF : 0xFFFF_FFFF))
      case 0xF0...0xF7:  // LMSW reg
        try requireCPL0()
        try lmsw(getReg(modRM, 2))
      default:
        throw Fault.ud()
      }
      return false
    }
    let a = addr()
    switch op {
    case 0, 1:  // SGDT / SIDT
      if cr4 & CR4.umip != 0 && cpl > 0 { throw Fault.gp(0) }
      let t = op == 0 ? gdtr : idtr
      try writeMem(eaSeg, a, 2, UInt64(t.limit))
      if mode64 {
        try writeMem(eaSeg, a &+ 2, 8, t.base)
      } else {
        try writeMem(eaSeg, (a &+ 2) & sizeMask(adSize), 4, t.base & 0xFFFF_FFFF)
      }
    case 2, 3:  // LGDT / LIDT
      try requireCPL0()
      let limit = UInt16(truncatingIfNeeded: try readMem(eaSeg, a, 2))
      var base: UInt64
      if mode64 {
        base = try readMem(eaSeg, a &+ 2, 8)
        if !isCanonical(base) { throw Fault.gp(0) }
      } else {
        base = try readMem(eaSeg, (a &+ 2) & sizeMask(adSize), 4)
        if opSize == 2 { base &= 0xFF_FFFF }
      }
      if op == 2 {
        gdtr = DescriptorTableRegister(base: base, limit: limit)
      } else {
        idtr = DescriptorTableRegister(base: base, limit: limit)
      }
    case 4:  // SMSW m16
      if cr4 & CR4.umip != 0 && cpl > 0 { throw Fault.gp(0) }
      try writeMem(eaSeg, a, 2, cr0 & 0xFFFF)
    case 6:  // LMSW m16
      try requireCPL0()
      try lmsw(try readMem(eaSeg, a, 2))
    case 7:  // INVLPG
      try requireCPL0()
      stats.invlpg &+= 1
      flushTLBPage(linear(eaSeg, a))
    default:
      throw Fault.ud()
    }
    return false
  }

  func lmsw(_ v: UInt64) throws(Fault) {
    // LMSW can set PE but never clear it.
    let nv = (cr0 & ~UInt64(0xE)) | (v & 0xF) | (cr0 & CR0.pe)
    try writeCR(0, nv)
  }

  func group9() throws(Fault) {
    let op = modReg & 7
    if op == 1 && !modIsReg {
      let a = addr()
      if opSize == 8 {
        if !hasCX16 { throw Fault.ud() }
        if linear(eaSeg, a) & 0xF != 0 { throw Fault.gp(0) }
        let lo = try readMem(eaSeg, a, 8)
        let hi = try readMem(eaSeg, a &+ 8, 8)
        if lo == r[0] && hi == r[2] {
          try writeMem(eaSeg, a, 8, r[3])
          try writeMem(eaSeg, a &+ 8, 8, r[1])
          setStatus(RFLAGS.zf, mask: RFLAGS.zf)
        } else {
          try writeMem(eaSeg, a, 8, lo)
          try writeMem(eaSeg, a &+ 8, 8, hi)
          r[0] = lo
          r[2] = hi
          setStatus(0, mask: RFLAGS.zf)
        }
      } else {
        let m = try readMem(eaSeg, a, 8)
        let cur = (r[2] & 0xFFFF_FFFF) << 32 | (r[0] & 0xFFFF_FFFF)
        if m == cur {
          try writeMem(eaSeg, a, 8, (r[1] & 0xFFFF_FFFF) << 32 | (r[3] & 0xFFFF_FFFF))
          setStatus(RFLAGS.zf, mask: RFLAGS.zf)
        } else {
          try writeMem(eaSeg, a, 8, m)
          r[0] = m & 0xFFFF_FFFF
          r[2] = m >> 32
          setStatus(0, mask: RFLAGS.zf)
        }
      }
      return
    }
    if op == 7 && modIsReg && rep == 0xF3 && hasRDPID {
      setReg(modRM, mode64 ? 8 : 4, tscAux & 0xFFFF_FFFF)
      return
    }
    // RDRAND/RDSEED are not advertised by the default policy.
    throw Fault.ud()
  }

  func group15() throws(Fault) {
    let op = modReg & 7
    if modIsReg {
      if rep == 0xF3 && mode64 && op <= 3 {
        // RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE
        if !hasFSGSBASE || cr4 & CR4.fsgsbase == 0 { throw Fault.ud() }
        let s = opSize == 8 ? 8 : 4
        let sr = op & 1 == 0 ? FS : GS
        if op < 2 {
          setReg(modRM, s, seg[sr].base & sizeMask(s))
        } else {
          let v = getReg(modRM, s)
          if !isCanonical(v) { throw Fault.gp(0) }
          seg[sr].base = v
          segBase[sr] = v
        }
        return
      }
      switch op {
      case 5, 6, 7: return  // LFENCE / MFENCE / SFENCE
      default: throw Fault.ud()
      }
    }
    let a = addr()
    switch op {
    case 0, 1:  // FXSAVE / FXRSTOR
      if cr0 & CR0.em != 0 { throw Fault.ud() }
      if cr0 & CR0.ts != 0 { throw Fault.nm() }
      if linear(eaSeg, a) & 0xF != 0 { throw Fault.gp(0) }
      if op == 0 { try fxsave(a) } else { try fxrstor(a) }
    case 2, 3:  // LDMXCSR / STMXCSR
      if cr0 & CR0.em != 0 || cr4 & CR4.osfxsr == 0 { throw Fault.ud() }
      if cr0 & CR0.ts != 0 { throw Fault.nm() }
      if op == 2 {
        let v = UInt32(truncatingIfNeeded: try readMem(eaSeg, a, 4))
        if v & ~0xFFFF != 0 { throw Fault.gp(0) }
        mxcsr = v
      } else {
        try writeMem(eaSeg, a, 4, UInt64(mxcsr))
      }
    case 7:  // CLFLUSH / CLFLUSHOPT: touch for #PF, no cache model
      _ = try readMem(eaSeg, a, 1)
    default:
      // XSAVE family: only if advertised, and not implemented yet.
      throw Fault.ud()
    }
  }

  func fxsave(_ a: UInt64) throws(Fault) {
    let s = eaSeg
    try writeMem(s, a, 2, UInt64(fpuCW))
    try writeMem(s, a &+ 2, 2, UInt64(fpuSW))
    try writeMem(s, a &+ 4, 1, UInt64(fpuTW))
    try writeMem(s, a &+ 5, 1, 0)
    try writeMem(s, a &+ 6, 2, 0)
    try writeMem(s, a &+ 8, 8, 0)
    try writeMem(s, a &+ 16, 8, 0)
    try writeMem(s, a &+ 24, 4, UInt64(mxcsr))
    try writeMem(s, a &+ 28, 4, 0xFFFF)
    for i in 0..<16 {
      try writeMem(
        s, a &+ 32 &+ UInt64(i * 8), 8, fpuRegs.load(fromByteOffset: i * 8, as: UInt64.self))
    }
    let nx = mode64 ? 16 : 8
    for i in 0..<(nx * 2) {
      try writeMem(
        s, a &+ 160 &+ UInt64(i * 8), 8, xmm.load(fromByteOffset: i * 8, as: UInt64.self))
    }
  }

  func fxrstor(_ a: UInt64) throws(Fault) {
    let s = eaSeg
    let m = UInt32(truncatingIfNeeded: try readMem(s, a &+ 24, 4))
    if m & ~0xFFFF != 0 { throw Fault.gp(0) }
    // Read everything before committing so a fault leaves state unchanged.
    let cw = UInt16(truncatingIfNeeded: try readMem(s, a, 2))
    let sw = UInt16(truncatingIfNeeded: try readMem(s, a &+ 2, 2))
    let tw = UInt8(truncatingIfNeeded: try readMem(s, a &+ 4, 1))
    var st = [UInt64](repeating: 0, count: 16)
    for i in 0..<16 { st[i] = try readMem(s, a &+ 32 &+ UInt64(i * 8), 8) }
    let nx = mode64 ? 16 : 8
    var x = [UInt64](repeating: 0, count: nx * 2)
    for i in 0..<(nx * 2) { x[i] = try readMem(s, a &+ 160 &+ UInt64(i * 8), 8) }
    fpuCW = cw
    fpuSW = sw
    fpuTW = tw
    mxcsr = m
    for i in 0..<16 { fpuRegs.storeBytes(of: st[i], toByteOffset: i * 8, as: UInt64.self) }
    for i in 0..<(nx * 2) { xmm.storeBytes(of: x[i], toByteOffset: i * 8, as: UInt64.self) }
  }
}

extension InterpreterCPU {
  /// VMCALL/VMMCALL: outside 64-bit mode only the low halves count (as KVM reads them).
  func hypercallExit() -> VMExit {
    let m: UInt64 = mode64 ? ~0 : 0xFFFF_FFFF
    return .hypercall(number: r[0] & m, arguments: [r[3] & m, r[1] & m, r[2] & m, r[6] & m])
  }
}
