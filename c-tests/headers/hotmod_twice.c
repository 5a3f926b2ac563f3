/* hotmod.h included twice, and after hotmod_plugin.h (which it includes):
 * the include guards must cover everything in both headers. */
#include "hotmod_plugin.h"
#include "hotmod.h"
#include "hotmod.h"

int header_check(void);
int header_check(void) { return HOTMOD_STATUS_OK + HOTMOD_EVENT_KIND_LOADED * 0; }
