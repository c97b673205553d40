/* A software stand-in for Coral's libedgetpu.so.1, at the library boundary.
 *
 * It speaks the TFLite external-delegate plugin ABI that load_delegate() uses, so the agent's
 * --edgetpu path runs exactly as on a Pi: dlopen, tflite_plugin_create_delegate with the
 * "device" option, ModifyGraphWithDelegate. Devices "present" are listed in
 * $EDGETPU_STUB_DEVICES (e.g. "usb:0,pci:0"); asking for any other device fails the way the
 * real library does (NULL delegate → ValueError in Python). The delegate claims no nodes, so
 * the model then runs on the CPU kernels.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int TfLiteStatus; /* kTfLiteOk == 0 */
typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  TfLiteStatus (*CopyFromBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  TfLiteStatus (*CopyToBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  void (*FreeBufferHandle)(void*, struct TfLiteDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

static TfLiteStatus prepare(void* context, TfLiteDelegate* delegate) {
  (void)context;
  (void)delegate;
  return 0;
}

static int device_present(const char* wanted) {
  const char* devices = getenv("EDGETPU_STUB_DEVICES");
  if (devices == NULL || devices[0] == '\0') return 0;
  if (wanted == NULL || wanted[0] == '\0') return 1; /* any device */
  char copy[256];
  strncpy(copy, devices, sizeof(copy) - 1);
  copy[sizeof(copy) - 1] = '\0';
  for (char* tok = strtok(copy, ","); tok != NULL; tok = strtok(NULL, ",")) {
    if (strcmp(tok, wanted) == 0) return 1;
    /* "usb" matches "usb:0" like the real library's "first device of this type" */
    if (strchr(wanted, ':') == NULL && strncmp(tok, wanted, strlen(wanted)) == 0) return 1;
  }
  return 0;
}

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*)) {
  const char* wanted = NULL;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(keys[i], "device") == 0) wanted = values[i];
  }
  if (!device_present(wanted)) {
    if (report_error) report_error("Failed to open device (edgetpu stub: no such device)");
    return NULL;
  }
  TfLiteDelegate* d = calloc(1, sizeof(TfLiteDelegate));
  d->Prepare = prepare;
  return d;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }
