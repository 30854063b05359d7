// KVM module
