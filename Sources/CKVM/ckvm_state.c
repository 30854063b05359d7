#include "ckvm_state.h"

#include <errno.h>

#ifdef __linux__

#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

static int result(int r) { return r < 0 ? -errno : r; }

int ckvm_get_fpu(int vcpu_fd, uint8_t image[512]) {
  struct kvm_fpu f;
  int r = result(ioctl(vcpu_fd, KVM_GET_FPU, &f));
  if (r < 0) return r;
  memset(image, 0, 512);
  memcpy(image + 0, &f.fcw, 2);
  memcpy(image + 2, &f.fsw, 2);
  image[4] = f.ftwx;
  memcpy(image + 6, &f.last_opcode, 2);
  memcpy(image + 8, &f.last_ip, 8);
  memcpy(image + 16, &f.last_dp, 8);
  memcpy(image + 24, &f.mxcsr, 4);
  uint32_t mask = 0xFFFF;
  memcpy(image + 28, &mask, 4);
  for (int i = 0; i < 8; i++) memcpy(image + 32 + 16 * i, f.fpr[i], 16);
  for (int i = 0; i < 16; i++) memcpy(image + 160 + 16 * i, f.xmm[i], 16);
  return 0;
}

int ckvm_set_fpu(int vcpu_fd, const uint8_t image[512]) {
  struct kvm_fpu f;
  memset(&f, 0, sizeof f);
  memcpy(&f.fcw, image + 0, 2);
  memcpy(&f.fsw, image + 2, 2);
  f.ftwx = image[4];
  memcpy(&f.last_opcode, image + 6, 2);
  memcpy(&f.last_ip, image + 8, 8);
  memcpy(&f.last_dp, image + 16, 8);
  memcpy(&f.mxcsr, image + 24, 4);
  for (int i = 0; i < 8; i++) memcpy(f.fpr[i], image + 32 + 16 * i, 16);
  for (int i = 0; i < 16; i++) memcpy(f.xmm[i], image + 160 + 16 * i, 16);
  return result(ioctl(vcpu_fd, KVM_SET_FPU, &f));
}

int ckvm_get_events(int vcpu_fd, ckvm_events *out) {
  struct kvm_vcpu_events e;
  int r = result(ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &e));
  if (r < 0) return r;
  out->interrupt_shadow = e.interrupt.shadow;
  out->nmi_masked = e.nmi.masked;
  out->nmi_pending = e.nmi.pending;
  return 0;
}

int ckvm_set_events(int vcpu_fd, const ckvm_events *in) {
  struct kvm_vcpu_events e;
  int r = result(ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &e));
  if (r < 0) return r;
  e.interrupt.shadow = in->interrupt_shadow;
  e.nmi.masked = in->nmi_masked;
  e.nmi.pending = in->nmi_pending;
  e.flags = KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING;
  return result(ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &e));
}

#else

int ckvm_get_fpu(int vcpu_fd, uint8_t image[512]) { (void)vcpu_fd; (void)image; return -ENOSYS; }
int ckvm_set_fpu(int vcpu_fd, const uint8_t image[512]) { (void)vcpu_fd; (void)image; return -ENOSYS; }
int ckvm_get_events(int vcpu_fd, ckvm_events *out) { (void)vcpu_fd; (void)out; return -ENOSYS; }
int ckvm_set_events(int vcpu_fd, const ckvm_events *in) { (void)vcpu_fd; (void)in; return -ENOSYS; }

#endif
