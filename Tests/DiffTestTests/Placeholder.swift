import XCTest

final class DiffTestPlaceholder: XCTestCase {}
