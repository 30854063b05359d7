extension ConsoleOptions {
  /// Under `--api-sock` a guest reset ends the VM (status 0), as Firecracker exits on
  /// CPU reset: its documented way to stop a guest is SendCtrlAltDel, which Linux
  /// answers with a restart.
  var endingOnReset: ConsoleOptions {
    var o = self
    o.noReboot = true
    return o
  }
}
