/* The public header compiles alone under -std=c99 -pedantic -Werror. */
#include "qerr.h"

int qerr_headertest_dummy(void);
int qerr_headertest_dummy(void) { return QERR_VERSION_NUMBER > 0 ? QERR_OK : QERR_E_INTERNAL; }
