import BenchStats
import XCTest

final class BenchStatsTests: XCTestCase {
  func testMedianAndDeviation() {
    XCTAssertEqual(BenchStats.median([]), 0)
    XCTAssertEqual(BenchStats.median([3, 1, 2]), 2)
    XCTAssertEqual(BenchStats.median([4, 1, 3, 2]), 2.5)
    // Deviations from 2 are 1, 0, 8: their median is 1, whatever the wild 10.
    XCTAssertEqual(BenchStats.medianAbsoluteDeviation([1, 2, 10]), 1)
    XCTAssertEqual(BenchStats.medianAbsoluteDeviation([5]), 0)
    let s = BenchSummary([2.0, 1.0, 4.0])
    XCTAssertEqual([s.median, s.spread, s.min, s.max], [2, 1, 1, 4])
    XCTAssertEqual(s.count, 3)
    XCTAssertEqual(s.relativeSpread, 0.5)
    XCTAssertEqual(BenchSummary([]).relativeSpread, .infinity)
  }

  /// The cost per unit is the median of the pairs' differences, not the difference of
  /// the medians: the pair that ran under a load burst (both runs slow) still gives
  /// the right difference, and one wild pair does not move the figure.
  func testUnitCostUsesPairedDifferences() {
    // Start-up 0.30 s, 0.10 s per unit; small = 2 units, large = 6 units.
    // Pair 1 ran under load (+0.5 s on both), pair 3's large run hit a stall (+0.9 s).
    let small = [1.00, 0.50, 0.52]
    let large = [1.39, 0.90, 1.82]
    let c = UnitCost(small: small, large: large, smallUnits: 2, largeUnits: 6)
    XCTAssertEqual(c.pairs, 3)
    XCTAssertEqual(c.deltaSeconds, 0.40, accuracy: 1e-9)  // differences 0.39, 0.40, 1.30
    XCTAssertEqual(c.secondsPerUnit, 0.10, accuracy: 1e-9)
    XCTAssertEqual(c.spreadSeconds, 0.01, accuracy: 1e-9)
    XCTAssertEqual(c.startupSeconds, 0.52 - 0.2, accuracy: 1e-9)  // median small 0.52
    XCTAssertTrue(c.isMeasurement)
    XCTAssertTrue(c.isSettled)
    // The old estimator (difference of the medians, judged against the widest range)
    // got 0.87 s, twice the truth, and refused it as within a range of 0.92 s.
    let oldDelta = BenchStats.median(large) - BenchStats.median(small)
    let oldNoise = max(large.max()! - large.min()!, small.max()! - small.min()!)
    XCTAssertEqual(oldDelta, 0.87, accuracy: 1e-9)
    XCTAssertFalse(oldDelta > 3 * oldNoise)
  }

  func testUnitCostRefusesNoise() {
    // Differences 0.05, 0.30, 0.60: the spread (0.25) is most of the median (0.30).
    var c = UnitCost(small: [1, 1, 1], large: [1.05, 1.30, 1.60], smallUnits: 1, largeUnits: 3)
    XCTAssertEqual(c.deltaSeconds, 0.30, accuracy: 1e-9)
    XCTAssertFalse(c.isMeasurement)
    XCTAssertFalse(c.isSettled)
    // Too small a difference is not a figure, however steady.
    c = UnitCost(small: [1, 1, 1], large: [1.01, 1.01, 1.01], smallUnits: 1, largeUnits: 3)
    XCTAssertFalse(c.isMeasurement)
    // A negative difference (the large run was faster) is never a figure.
    c = UnitCost(small: [2, 2, 2], large: [1, 1, 1], smallUnits: 1, largeUnits: 3)
    XCTAssertFalse(c.isMeasurement)
    XCTAssertEqual(c.relativeSpread, .infinity)
    // Measured but unsettled: spread 0.06 of 0.40 is 15%.
    c = UnitCost(small: [1, 1, 1], large: [1.34, 1.40, 1.46], smallUnits: 1, largeUnits: 3)
    XCTAssertTrue(c.isMeasurement)
    XCTAssertFalse(c.isSettled)
  }

  func testUnitCostPairsOnlyWhatBothSizesRan() {
    let c = UnitCost(small: [1, 1, 9], large: [2, 2], smallUnits: 1, largeUnits: 2)
    XCTAssertEqual(c.pairs, 2)
    XCTAssertEqual(c.deltaSeconds, 1)
    XCTAssertEqual(c.startupSeconds, 0)
  }
}
