/// "Did you mean" suggestions for names users type: subcommands, CPU features, policy keys.
public enum NearestName {
  /// The candidate closest to `name` by edit distance, if close enough to be a likely typo
  /// (at most a third of the name's length, and at least 1, wrong). Case, `_` and `-`
  /// are ignored, so "sse42" finds "sse4_2" and "MMU_compare" "mmu-compare".
  public static func suggest<S: Sequence>(_ name: String, among candidates: S) -> String?
  where S.Element == String {
    let limit = max(1, name.count / 3)
    var best: (String, Int)?
    for c in candidates {
      let d = distance(normalized(name), normalized(c))
      if d <= limit, d < (best?.1 ?? .max) { best = (c, d) }
    }
    return best?.0
  }

  static func normalized(_ s: String) -> String {
    String(s.lowercased().filter { $0 != "_" && $0 != "-" })
  }

  /// Levenshtein distance (insertions, deletions, substitutions), one row at a time.
  public static func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    var row = Array(0...b.count)
    for i in 1...a.count {
      var prev = row[0]
      row[0] = i
      for j in stride(from: 1, through: b.count, by: 1) {
        let cur = row[j]
        row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
        prev = cur
      }
    }
    return row[b.count]
  }
}
