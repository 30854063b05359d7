import XCTest

@testable import APIServer
