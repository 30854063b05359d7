#include "cnativeexec.h"
