import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import VMM

/// HTTP/1.1 on a Unix socket (SwiftNIO), serving a `VMController`. Requests run
/// one at a time on a serial queue, off the event loop, so a slow action (a
/// pause waiting for the vCPU) never stalls other connections' parsing. A client
/// that sends garbage, disconnects mid-request or sends a body over `bodyLimit`
/// only loses its own connection: the VM never sees it.
public final class APIServer {
  public struct StartError: Error, CustomStringConvertible {
    public var description: String
  }

  /// Largest request body accepted (413 beyond it).
  public static let bodyLimit = 64 * 1024

  public let path: String
  private let group: MultiThreadedEventLoopGroup
  private let channel: Channel

  /// Binds `path` (which must not exist yet, as Firecracker requires) and serves `controller`.
  public init(path: String, controller: VMController) throws(StartError) {
    if FileManager.default.fileExists(atPath: path) {
      throw StartError(description: "--api-sock \(path): already exists (remove it first)")
    }
    self.path = path
    let queue = DispatchQueue(label: "swiftvmm.api")
    group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let bootstrap = ServerBootstrap(group: group)
      .serverChannelOption(ChannelOptions.backlog, value: 64)
      .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
          channel.pipeline.addHandler(
            HTTPHandler(limit: APIServer.bodyLimit) { request, loop in
              let promise = loop.makePromise(of: APIResponse.self)
              queue.async { promise.succeed(controller.handle(request)) }
              return promise.futureResult
            })
        }
      }
    do {
      channel = try bootstrap.bind(unixDomainSocketPath: path).wait()
    } catch {
      try? group.syncShutdownGracefully()
      throw StartError(description: "--api-sock \(path): cannot listen: \(error)")
    }
  }

  /// Stops serving and removes the socket file.
  public func close() {
    try? channel.close().wait()
    try? group.syncShutdownGracefully()
    unlink(path)
  }
}

/// One connection's request parts, assembled into an `APIRequest`.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart
  typealias Respond = (APIRequest, EventLoop) -> EventLoopFuture<APIResponse>

  private let limit: Int
  private let respond: Respond
  private var head: HTTPRequestHead?
  private var body: [UInt8] = []
  private var tooLarge = false

  init(limit: Int, respond: @escaping Respond) {
    self.limit = limit
    self.respond = respond
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let h):
      head = h
      body = []
      if let n = h.headers.first(name: "Content-Length").flatMap(Int.init), n > limit {
        refuseOversize(h, context: context)
      }
    case .body(let buffer):
      guard !tooLarge, let h = head else { return }
      if body.count + buffer.readableBytes > limit {
        refuseOversize(h, context: context)
      } else {
        body += buffer.readableBytesView
      }
    case .end:
      guard !tooLarge, let h = head else { return }
      head = nil
      let keepAlive = h.isKeepAlive
      let path = String(h.uri.split(separator: "?", maxSplits: 1).first ?? "")
      let request = APIRequest(method: h.method.rawValue, path: path, body: body)
      body = []
      let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
      respond(request, context.eventLoop).whenSuccess { response in
        let (handler, context) = loopBound.value
        handler.write(response, version: h.version, keepAlive: keepAlive, context: context)
      }
    }
  }

  /// Answers 413 at once and closes: the rest of the body is never read or held.
  private func refuseOversize(_ h: HTTPRequestHead, context: ChannelHandlerContext) {
    tooLarge = true
    body = []
    write(
      .fault("Request payload is larger than the limit of \(limit) bytes.", status: 413),
      version: h.version, keepAlive: false, context: context)
  }

  private func write(
    _ r: APIResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext
  ) {
    guard context.channel.isActive else { return }  // the client left: nothing to answer
    var headers = HTTPHeaders()
    var buffer = context.channel.allocator.buffer(capacity: 0)
    if let b = r.body {
      buffer.writeString(b.text)
      headers.add(name: "Content-Type", value: "application/json")
    }
    if r.status != 204 { headers.add(name: "Content-Length", value: "\(buffer.readableBytes)") }
    headers.add(name: "Server", value: "SwiftVMM API")
    if !keepAlive { headers.add(name: "Connection", value: "close") }
    let head = HTTPResponseHead(
      version: version, status: HTTPResponseStatus(statusCode: r.status), headers: headers)
    context.write(wrapOutboundOut(.head(head)), promise: nil)
    if buffer.readableBytes > 0 {
      context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }
    let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
    if !keepAlive { done.whenComplete { _ in context.close(promise: nil) } }
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    context.close(promise: nil)
  }
}
