/* hotmod.h compiles on its own, as the first and only include. */
#include "hotmod.h"

int header_check(void);
int header_check(void) {
  hotmod_status s = HOTMOD_STATUS_OK;
  struct hotmod_method_stats st;
  st.calls = 0;
  return (int)s + (int)st.calls + HOTMOD_VERSION_MAJOR * 0;
}
