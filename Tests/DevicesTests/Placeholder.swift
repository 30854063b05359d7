import XCTest

final class DevicesTestsPlaceholder: XCTestCase {}
