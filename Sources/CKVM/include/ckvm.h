// Placeholder; the KVM shim is written in Sources/CKVM.
#pragma once
