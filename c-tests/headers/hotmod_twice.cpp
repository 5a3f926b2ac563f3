// C++ variant of hotmod_twice.c (compiled with g++).
#include "hotmod_twice.c"
