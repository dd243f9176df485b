#ifndef GR_SERVER_H
#define GR_SERVER_H
#endif
