/// The recipe for the Debian 12 system image that `swiftvmm guest fetch-rootfs` builds:
/// which packages debootstrap installs and which files configure the result. The
/// command that runs debootstrap and mkfs lives in the executable; this is data only,
/// so tests can check it without root.
public enum DebianRootfs {
  public static let suite = "bookworm"
  public static let imageName = "debian-12.ext4"
  /// Default image size; the minbase system with these packages takes about 500 MiB.
  public static let defaultSizeMiB = 2048

  /// debootstrap's minbase plus what a VM people log into needs: systemd as init,
  /// udev (device nodes, module autoloading), networkd (DHCP), ssh and apt.
  public static let packages = [
    "systemd-sysv", "udev", "dbus", "iproute2", "iputils-ping", "openssh-server", "procps",
    "kmod", "netbase", "ca-certificates", "less",
  ]

  /// Files written into the image, relative to its root, with their permissions.
  public static func files(hostname: String = "swiftvmm") -> [(
    path: String, contents: String, mode: Int
  )] {
    [
      ("etc/hostname", hostname + "\n", 0o644),
      ("etc/hosts", "127.0.0.1 localhost\n127.0.1.1 \(hostname)\n", 0o644),
      ("etc/fstab", "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n", 0o644),
      // systemd-networkd configures any Ethernet link by DHCP (virtio-net appears as en*/eth*).
      (
        "etc/systemd/network/80-dhcp.network",
        "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n", 0o644
      ),
      // The serial console logs root in without a password; ssh still needs a key.
      (
        "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf",
        "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM\n",
        0o644
      ),
      (
        "etc/systemd/system/serial-getty@hvc0.service.d/autologin.conf",
        "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM\n",
        0o644
      ),
      ("etc/ssh/sshd_config.d/swiftvmm.conf", "PermitRootLogin prohibit-password\n", 0o644),
      ("root/.ssh/authorized_keys", "", 0o600),
    ]
  }

  /// Commands run inside the staged root (chroot) after the files are written.
  public static let chrootCommands: [[String]] = [
    ["systemctl", "enable", "systemd-networkd"],
    ["systemctl", "enable", "serial-getty@ttyS0.service"],
    ["passwd", "-d", "root"],
  ]

  /// The initramfs /init that boots a root file system on `device`: it loads the
  /// virtio modules (the cloud kernel builds them as modules), mounts the disk and
  /// hands over to systemd with switch_root.
  public static func rootInitScript(device: String = "/dev/vda", moduleList: String) -> String {
    """
    #!/bin/sh
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev 2>/dev/null
    if [ -f /\(moduleList) ]; then
      for m in $(cat /\(moduleList)); do insmod $m 2>/dev/null; done
    fi
    mkdir -p /newroot
    n=0
    while [ ! -b \(device) ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
    if ! mount -t ext4 -o rw \(device) /newroot; then
      echo "swiftvmm initramfs: cannot mount \(device) (is the disk given with --disk?)"
      poweroff -f
    fi
    if [ ! -L /newroot/sbin/init ] && [ ! -x /newroot/sbin/init ]; then
      echo "swiftvmm initramfs: \(device) has no /sbin/init"
      poweroff -f
    fi
    umount /proc /sys
    mount --move /dev /newroot/dev 2>/dev/null || umount /dev
    exec switch_root /newroot /sbin/init

    """
  }
}
