import Logging

/// Remembers which addresses were already logged, so each is logged once, but at
/// most `capacity` of them: a guest sweeping unassigned addresses must not grow
/// host memory. Past the bound one line says further addresses go unlogged.
struct BoundedWarnings<Key: Hashable> {
  let capacity: Int
  private(set) var seen = Set<Key>()
  private var saturated = false

  init(capacity: Int = 256) { self.capacity = capacity }

  /// True the first time `key` is seen while there is room; logs the saturation once.
  mutating func firstTime(_ key: Key, logger: Logger, what: String) -> Bool {
    if seen.contains(key) { return false }
    guard seen.count < capacity else {
      if !saturated {
        saturated = true
        logger.debug("more than \(capacity) unassigned \(what) addresses; no longer logging them")
      }
      return false
    }
    seen.insert(key)
    return true
  }
}
