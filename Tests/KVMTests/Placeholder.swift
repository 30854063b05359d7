import XCTest

final class KVMTestsPlaceholder: XCTestCase {}
