// C++ variant of plugin_alone.c (compiled with g++).
#include "plugin_alone.c"
