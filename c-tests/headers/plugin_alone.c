/* hotmod_plugin.h compiles on its own, as the first and only include. */
#include "hotmod_plugin.h"

int header_check(void);
int header_check(void) {
  hotmod_output out;
  memset(&out, 0, sizeof out);
  return hotmod_output_write(&out, "x", 1) == HOTMOD_PLUGIN_OUTPUT_TOO_SMALL ? 0 : 1;
}
