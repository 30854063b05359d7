import Boot
import Foundation
import TestSupport
import XCTest

/// What every Linux test that runs the `swiftvmm` binary needs: the Debian guest
/// fetched, a release build (the debug engines are too slow to boot Linux), and the
/// binary next to the test runner. Anything missing is an XCTSkip with the reason.
func requireLinuxGuestAndBinary() throws -> LinuxGuestImages {
  guard let guest = LinuxGuestImages.locate() else {
    throw XCTSkip("Debian guest not fetched; run `swiftvmm guest fetch-linux`")
  }
  #if DEBUG
    throw XCTSkip("needs a release build (scripts/test): the debug engines are too slow")
  #else
    guard FileManager.default.isExecutableFile(atPath: GuestImages.swiftvmmBinary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner")
    }
    return guest
  #endif
}
