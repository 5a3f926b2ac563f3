// C++ variant of plugin_twice.c (compiled with g++).
#include "plugin_twice.c"
