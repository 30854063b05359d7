// vCPU state for snapshots: FPU/SSE as an FXSAVE image and the event state
// (interrupt shadow, NMI masking). Same conventions as ckvm.h.
#ifndef CKVM_STATE_H
#define CKVM_STATE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// KVM_GET_FPU into / KVM_SET_FPU from a 512-byte FXSAVE image (64-bit layout).
int ckvm_get_fpu(int vcpu_fd, uint8_t image[512]);
int ckvm_set_fpu(int vcpu_fd, const uint8_t image[512]);

typedef struct {
  uint8_t interrupt_shadow;  // STI / MOV SS shadow
  uint8_t nmi_masked;        // an NMI handler is running
  uint8_t nmi_pending;
} ckvm_events;

// KVM_GET_VCPU_EVENTS / KVM_SET_VCPU_EVENTS (only the fields above; the rest kept).
int ckvm_get_events(int vcpu_fd, ckvm_events *out);
int ckvm_set_events(int vcpu_fd, const ckvm_events *in);

#ifdef __cplusplus
}
#endif

#endif
