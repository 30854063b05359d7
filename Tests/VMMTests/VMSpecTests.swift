import Foundation
import TestSupport
import XCTest

@testable import VMM

/// The Firecracker-shaped config file: each kind of error names its field.
final class VMSpecTests: XCTestCase {
  var kernel = ""
  var disk = ""

  override func setUpWithError() throws {
    kernel = try temp(Array(repeating: 0x90, count: 64))
    disk = try temp(Array(repeating: 0, count: 4096))
  }

  func temp(_ bytes: [UInt8]) throws -> String {
    let p = NSTemporaryDirectory() + "swiftvmm-spec-\(UUID().uuidString)"
    try Data(bytes).write(to: URL(fileURLWithPath: p))
    addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
    return p
  }

  func spec(_ json: String) throws(JSONFieldError) -> VMSpec {
    try VMSpec.parse(configFile: Array(json.utf8))
  }

  /// The error `json` is refused with, as the user reads it.
  func refusal(_ json: String, map: Bool = false) -> String {
    do {
      let s = try spec(json)
      if map { _ = try s.machineConfig() }
      return "accepted"
    } catch {
      return error.description
    }
  }

  var full: String {
    """
    {"boot-source": {"kernel_image_path": "\(kernel)", "boot_args": "console=ttyS0"},
     "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "smt": false},
     "drives": [{"drive_id": "data", "path_on_host": "\(disk)", "is_root_device": false},
                {"drive_id": "rootfs", "path_on_host": "\(disk)", "is_root_device": true,
                 "is_read_only": true}],
     "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                             "guest_mac": "06:00:ac:10:00:02"}],
     "swiftvmm": {"engine": "interpreter", "mmu": "shadow", "shadow_cap": 64, "console": "uart",
                  "rng": true, "timeout": 30, "cpuid": "minimal"}}
    """
  }

  func testFirecrackerShapeMapsOntoMachineConfig() throws {
    let c = try spec(full).machineConfig()
    XCTAssertEqual(c.kernelName, kernel)
    XCTAssertEqual(c.memorySize, 64 << 20)
    XCTAssertEqual(c.cpus, 1)
    XCTAssertEqual(c.engine, .interpreter)
    XCTAssertEqual(c.mmuMode, .shadow)
    XCTAssertEqual(c.shadowPageCap, 64)
    XCTAssertEqual(c.timeout, 30)
    XCTAssertNotNil(c.cpuid)
    // The root drive is vda, and the kernel is told so.
    XCTAssertEqual(c.commandLine, "console=ttyS0 root=/dev/vda ro")
    XCTAssertEqual(c.virtio.disks.map(\.id), ["rootfs", "data"])
    XCTAssertEqual(c.virtio.disks.map(\.readOnly), [true, false])
    XCTAssertEqual(c.virtio.network, .tap(name: "tap0"))
    XCTAssertEqual(c.virtio.mac, [0x06, 0, 0xAC, 0x10, 0, 2])
    XCTAssertTrue(c.virtio.entropy)
  }

  func testWrittenSpecReadsBackAsItself() throws {
    let s = try spec(full)
    XCTAssertEqual(try VMSpec.parse(configFile: Array(s.json.text.utf8)), s)
  }

  func testSyntaxAndShapeErrors() {
    XCTAssertTrue(refusal("{\"boot-source\": ").hasPrefix("malformed JSON"), refusal("{"))
    XCTAssertEqual(refusal("[1]"), "expected an object, found an array")
    XCTAssertEqual(refusal("{\"drives\": {}}"), "drives: expected an array, found an object")
  }

  func testUnknownKeysAreRefusedWithTheirPath() {
    XCTAssertEqual(refusal(#"{"boot_source": {}}"#), "boot_source: unknown key")
    XCTAssertEqual(
      refusal(#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "vcpus": 2}}"#),
      "machine-config.vcpus: unknown key")
    XCTAssertEqual(
      refusal(
        #"{"drives": [{"drive_id": "a", "path_on_host": "\#(disk)", "is_root_device": false, "ro": 1}]}"#
      ), "drives[0].ro: unknown key")
    XCTAssertEqual(refusal(#"{"swiftvmm": {"engin": "kvm"}}"#), "swiftvmm.engin: unknown key")
    XCTAssertEqual(
      refusal(#"{"vsock": {}}"#), "vsock: not supported by SwiftVMM (see README, Config file)")
  }

  func testWrongTypesAndMissingFields() {
    XCTAssertEqual(
      refusal(#"{"machine-config": {"vcpu_count": "1", "mem_size_mib": 64}}"#),
      "machine-config.vcpu_count: expected an integer, found a string")
    XCTAssertEqual(
      refusal(#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 64.5}}"#),
      "machine-config.mem_size_mib: expected an integer, found a number")
    XCTAssertEqual(
      refusal(#"{"machine-config": {"vcpu_count": 1}}"#), "machine-config.mem_size_mib: is required"
    )
    XCTAssertEqual(
      refusal(#"{"boot-source": {"boot_args": "x"}}"#), "boot-source.kernel_image_path: is required"
    )
    XCTAssertEqual(
      refusal(#"{"drives": [{"drive_id": "a", "path_on_host": "\#(disk)"}]}"#),
      "drives[0].is_root_device: is required")
    XCTAssertEqual(
      refusal(#"{"swiftvmm": {"rng": 1}}"#), "swiftvmm.rng: expected true or false, found a number")
    XCTAssertEqual(
      refusal(#"{"machine-config": {"vcpu_count": -1, "mem_size_mib": 64}}"#),
      "machine-config.vcpu_count: -1 is out of range (0...255)")
  }

  func testValuesAreJudgedByMachineConfigValidation() {
    func with(_ machine: String, _ x: String = "{}") -> String {
      refusal(
        #"{"boot-source": {"kernel_image_path": "\#(kernel)"}, "machine-config": \#(machine), "swiftvmm": \#(x)}"#,
        map: true)
    }
    XCTAssertTrue(
      with(#"{"vcpu_count": 9, "mem_size_mib": 64}"#).hasPrefix(
        "machine-config.vcpu_count: 9: at most 8 vCPUs are supported"),
      with(#"{"vcpu_count": 9, "mem_size_mib": 64}"#))
    XCTAssertTrue(
      with(#"{"vcpu_count": 1, "mem_size_mib": 1}"#).hasPrefix("machine-config.mem_size_mib: "),
      with(#"{"vcpu_count": 1, "mem_size_mib": 1}"#))
    let kvm = with(
      #"{"vcpu_count": 1, "mem_size_mib": 64}"#, #"{"engine": "kvm", "deterministic": true}"#)
    XCTAssertTrue(kvm.hasPrefix("swiftvmm.deterministic: needs a software engine"), kvm)
    let cap = with(
      #"{"vcpu_count": 1, "mem_size_mib": 64}"#, #"{"engine": "interpreter", "shadow_cap": 5}"#)
    XCTAssertTrue(cap.hasPrefix("swiftvmm.shadow_cap: applies only to --mmu shadow"), cap)
    XCTAssertEqual(
      with(#"{"vcpu_count": 1, "mem_size_mib": 64, "smt": true}"#),
      "machine-config.smt: SMT is not supported (one thread per core)")
    XCTAssertEqual(
      with(#"{"vcpu_count": 1, "mem_size_mib": 64}"#, #"{"engine": "qemu"}"#),
      "swiftvmm.engine: unknown engine 'qemu'; choose kvm, interpreter or translator")
    XCTAssertTrue(
      with(#"{"vcpu_count": 1, "mem_size_mib": 64}"#, #"{"cpuid": "/nonexistent.json"}"#)
        .hasPrefix("swiftvmm.cpuid: "))
  }

  func testFilesAndDevicesNameTheirField() {
    XCTAssertEqual(
      refusal(#"{"boot-source": {"kernel_image_path": "/nonexistent/vmlinux"}}"#, map: true),
      "boot-source.kernel_image_path: '/nonexistent/vmlinux' does not exist")
    XCTAssertEqual(
      refusal(#"{}"#, map: true), "boot-source: is required (the kernel to boot)")
    XCTAssertEqual(
      refusal(
        #"{"drives": [{"drive_id": "a", "path_on_host": "/nonexistent.img", "is_root_device": true}]}"#
      ),
      "drives[0].path_on_host: --disk /nonexistent.img: no such file")
    XCTAssertEqual(
      refusal(
        #"{"drives": [{"drive_id": "a b", "path_on_host": "\#(disk)", "is_root_device": true}]}"#),
      "drives[0].drive_id: id must be 1-20 printable ASCII characters without spaces")
    XCTAssertEqual(
      refusal(
        #"{"drives": [{"drive_id": "a", "path_on_host": "\#(disk)", "is_root_device": true}, {"drive_id": "b", "path_on_host": "\#(disk)", "is_root_device": true}]}"#
      ), "drives[1].is_root_device: another drive is already the root device")
    XCTAssertEqual(
      refusal(
        #"{"network-interfaces": [{"iface_id": "e", "host_dev_name": "tap0", "guest_mac": "zz"}]}"#),
      "network-interfaces[0].guest_mac: 'zz' is not a MAC address (52:54:00:12:34:56)")
    XCTAssertTrue(
      refusal(
        #"{"network-interfaces": [{"iface_id": "e", "host_dev_name": "a very long tap name"}]}"#
      )
      .hasPrefix("network-interfaces[0].host_dev_name: --net tap="))
    XCTAssertTrue(
      refusal(#"{"swiftvmm": {"net": "user,hostfwd=bad"}}"#).hasPrefix("swiftvmm.net: --net user"))
  }

  /// Hostile input: random and mutated documents never trap, whatever they say.
  func testNeverTrapOnRandomDocuments() {
    var rng = SeededRandom(seed: 13)
    let base = Array(full.utf8)
    for i in 0..<2000 {
      var b = base
      if i % 2 == 0 {
        for _ in 0..<Int.random(in: 1...8, using: &rng) {
          b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        }
      } else {
        b = (0..<Int.random(in: 0...64, using: &rng)).map { _ in
          Array("{}[]\":,0123456789truefalsenul -.e".utf8).randomElement(using: &rng)!
        }
      }
      if let s = try? VMSpec.parse(configFile: b) { _ = try? s.machineConfig() }
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    XCTAssertTrue(refusal(deep).hasPrefix("malformed JSON") || refusal(deep).hasPrefix("expected"))
  }
}
