/* hotmod_plugin.h included twice: the include guard must cover everything,
 * including the helper macros and inline functions. */
#include "hotmod_plugin.h"
#include "hotmod_plugin.h"

int header_check(void);
int header_check(void) { return (int)sizeof(hotmod_plugin_descriptor) > 0 ? 0 : 1; }
