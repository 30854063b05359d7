import XCTest

final class BootTestsPlaceholder: XCTestCase {}
