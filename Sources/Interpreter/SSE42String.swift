import X86

// SSE4.2 string compares: PCMPESTRM (60), PCMPESTRI (61), PCMPISTRM (62),
// PCMPISTRI (63), as the SDM's section on packed string compares defines them.
//
// imm8: [1:0] element format (unsigned bytes, unsigned words, signed bytes,
// signed words); [3:2] aggregation (equal any, ranges, equal each, equal
// ordered); [5:4] polarity; [6] most-significant index / expanded mask.

extension InterpreterCPU {
  func pcmpStr(_ b: UInt8, _ imm: Int) throws(Fault) {
    if !hasSSE42 { throw Fault.ud() }
    try sseCheck()
    let s2 = try xmmRM(16)  // no alignment requirement
    let s1 = xmmGet(modReg)
    let words = imm & 1 != 0
    let signed = imm & 2 != 0
    let n = words ? 8 : 16
    func elem(_ v: V128, _ i: Int) -> Int {
      if words { return signed ? Int(v.i16[i]) : Int(v.u16[i]) }
      return signed ? Int(v.i8[i]) : Int(v.u8[i])
    }
    let explicit = b <= 0x61
    func length(_ v: V128, reg: Int) -> Int {
      if explicit {
        let raw =
          rex & 8 != 0 ? Int64(bitPattern: r[reg]) : Int64(Int32(truncatingIfNeeded: r[reg]))
        let m = raw.magnitude
        return m > UInt64(n) ? n : Int(m)
      }
      for i in 0..<n where elem(v, i) == 0 { return i }
      return n
    }
    let len1 = length(s1, reg: 0)
    let len2 = length(s2, reg: 2)
    let agg = (imm >> 2) & 3
    var res1 = 0
    switch agg {
    case 0:  // equal any: is s2[j] any of the valid s1 elements?
      for j in 0..<len2 {
        for i in 0..<len1 where elem(s1, i) == elem(s2, j) {
          res1 |= 1 << j
          break
        }
      }
    case 1:  // ranges: s1 holds (low, high) pairs
      for j in 0..<len2 {
        let v = elem(s2, j)
        var i = 0
        while i + 1 < len1 {
          if elem(s1, i) <= v && v <= elem(s1, i + 1) {
            res1 |= 1 << j
            break
          }
          i += 2
        }
      }
    case 2:  // equal each: both invalid compares true, one invalid false
      for i in 0..<n {
        let v1 = i < len1
        let v2 = i < len2
        let t = v1 && v2 ? elem(s1, i) == elem(s2, i) : (!v1 && !v2)
        if t { res1 |= 1 << i }
      }
    default:  // equal ordered: s1 (the needle) starts at s2[j]
      for j in 0..<n {
        var t = true
        var k = 0
        while k < n - j && t {
          let v1 = k < len1
          let v2 = j + k < len2
          if v1 { t = v2 && elem(s1, k) == elem(s2, j + k) }
          k += 1
        }
        if t { res1 |= 1 << j }
      }
    }
    let all = (1 << n) - 1
    var res2: Int
    switch (imm >> 4) & 3 {
    case 1: res2 = res1 ^ all
    case 3: res2 = res1 ^ ((1 << len2) - 1)  // negate only where s2 is valid
    default: res2 = res1
    }
    if b & 1 != 0 {  // index into ECX
      let idx: Int
      if res2 == 0 {
        idx = n
      } else {
        idx =
          imm & 0x40 != 0
          ? (Int.bitWidth - 1 - res2.leadingZeroBitCount) : res2.trailingZeroBitCount
      }
      r[1] = UInt64(idx)
    } else {  // mask into XMM0
      if imm & 0x40 != 0 {
        var m = V128(0, 0)
        for i in 0..<n where (res2 >> i) & 1 != 0 {
          if words {
            var w = m.u16
            w[i] = 0xFFFF
            m = v128(w)
          } else {
            var w = m.u8
            w[i] = 0xFF
            m = v128(w)
          }
        }
        xmmSet(0, m)
      } else {
        xmmSet(0, V128(UInt64(res2), 0))
      }
    }
    var f: UInt64 = 0
    if res2 != 0 { f |= RFLAGS.cf }
    if len2 < n { f |= RFLAGS.zf }
    if len1 < n { f |= RFLAGS.sf }
    if res2 & 1 != 0 { f |= RFLAGS.of }
    setStatus(f)
  }
}
