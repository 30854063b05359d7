import XCTest

final class VMMTestsPlaceholder: XCTestCase {}
