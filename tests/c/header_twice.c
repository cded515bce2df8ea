/* The header compiles on its own, twice (include guard), as strict C. */
#include "tessera.h"
#include "tessera.h"

int tessera_header_compiles(void);
int tessera_header_compiles(void) { return (int)sizeof(tessera_verified_session); }
