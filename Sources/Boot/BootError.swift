/// Why an image cannot be booted. Every message names the problem.
public enum BootError: Error, Equatable, CustomStringConvertible {
  case notELF
  case unrecognizedImage
  case truncated(String)
  case malformed(String)
  case doesNotFit(String)
  case unsupported(String)

  public var description: String {
    switch self {
    case .notELF: return "not an ELF file"
    case .unrecognizedImage:
      return "kernel image is neither a multiboot image nor an ELF executable"
    case .truncated(let s): return "kernel image is truncated: \(s)"
    case .malformed(let s): return "kernel image is malformed: \(s)"
    case .doesNotFit(let s): return "kernel image does not fit in guest memory: \(s)"
    case .unsupported(let s): return "unsupported kernel image: \(s)"
    }
  }
}
