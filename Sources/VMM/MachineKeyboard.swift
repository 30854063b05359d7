/// Keys the host presses on the guest's keyboard.
extension Machine {
  /// Ctrl-Alt-Del on the i8042 keyboard, pressed between exits on the vCPU thread
  /// (the device is the vCPU thread's). Linux's keyboard driver turns it into a
  /// reboot request to init. Returns false when the guest has not enabled the
  /// keyboard, or the machine has stopped.
  public func sendCtrlAltDel() -> Bool {
    (try? onVCPUThread { [i8042] in i8042.pressCtrlAltDel() }) ?? false
  }
}
