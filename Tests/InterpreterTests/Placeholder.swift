import XCTest

final class InterpreterTestsPlaceholder: XCTestCase {}
